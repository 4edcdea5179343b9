"""The engine's ``apply_request`` handler: call a function in the engine's namespace.

Theory of operation
-------------------
ipyparallel messaging, "apply": the request's buffers hold a pickled call
``(fn, args, kwargs)`` (``parallel.protocol`` serialization); the reply's buffers hold
the pickled result, its content the status (and, on error, ``ename``/``evalue``/
``traceback``), its metadata the engine and the times. The call runs through
``Interpreter.run_callable``, so it is user code in every respect: it prints into the
request's output, Ctrl-C (``interrupt_request``) interrupts it, an exception becomes an
``error`` message with the kernel's own frames hidden, and an awaitable result is awaited.

Functions defined interactively on the client (module ``__main__``: a script, a console,
a notebook) run with the engine's namespace as their globals, as in ipyparallel, so
``apply(lambda: a)`` sees the ``a`` that ``push`` or ``execute`` put there. Names such a
function uses that the engine does not have (a helper defined next to it on the client)
are added to the engine's namespace from the client's copy, never replacing the engine's.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kernel.protocol import JSONDict, Message, Reply, SignatureError, utc_now_iso

from .._errors import SerializationError
from ..protocol._shm import METADATA_KEY, SharedDir, SharedMemoryError
from ._call_cache import CallCache, global_names
from ._write_threads import run_at_once, write_parts

if TYPE_CHECKING:
    from kernel.server import KernelServer

    from ..protocol._serialize import Frame

    DeserializeCall = Callable[
        [Sequence[Frame]], tuple[Callable[..., object], tuple[object, ...], dict[str, object]]
    ]
    SerializeObject = Callable[[object], list[bytes]]

__all__ = ["EngineIdentity", "handle_apply", "interactive_in", "with_shared_memory"]

ShellHandler = Callable[[Message, list[bytes]], Awaitable[Reply | None]]


@dataclass(frozen=True, slots=True)
class EngineIdentity:
    """Who an engine is in its cluster."""

    id: int
    uuid: str
    #: Whether buffers carry their own digest: not where the transport admits only this
    #: user (``ControllerInfo.authenticates_peers``).
    signs_buffers: bool = True
    #: The cluster's shared-memory directory as this engine sees it (``protocol._shm``):
    #: large buffers of clients on this host arrive and leave through it. None: the wire.
    shm: SharedDir | None = None


async def handle_apply(
    server: KernelServer,
    engine: EngineIdentity,
    request: Message,
    identities: list[bytes],
    *,
    calls: CallCache | None = None,
) -> Reply:
    """Answer one ``apply_request`` (registered in ``shell_handlers`` by ``make_engine``).

    ``calls``: calls unpickled before, reused where that cannot be told apart from a
    fresh unpickle (``_call_cache``); None: every call is unpickled.
    """
    deserialize_call, serialize_object = _codec()
    interpreter = server.interpreter
    metadata: JSONDict = {"engine": engine.uuid, "engine_id": engine.id, "started": utc_now_iso()}
    namespace = interpreter.user_ns
    try:
        # Unpickling runs code: only buffers signed with the cluster's key are loaded.
        if engine.signs_buffers:
            server.session.signer.verify_buffers(
                request.buffers, request.metadata.get("buffers_hmac")
            )
        key = None if calls is None else calls.key(request.buffers)
        cached = None if key is None else calls.get(key, namespace)  # type: ignore[union-attr]
        if cached is None:
            fn, args, kwargs = deserialize_call(request.buffers)
        else:
            fn, args, kwargs = cached.fn, cached.args, cached.kwargs
    except (SerializationError, SignatureError) as exc:
        return _failed(interpreter.report_error(exc), metadata)
    if cached is None:
        unpickled = fn
        fn = interactive_in(fn, namespace) if isinstance(fn, types.FunctionType) else fn
        # A map's function travels as an argument of the chunk runner: it too is interactive.
        if args and any(isinstance(a, types.FunctionType) for a in args):
            args = tuple(_interactive_arg(a, namespace) for a in args)
        if key is not None:
            calls.put(key, unpickled, fn, args, kwargs)  # type: ignore[union-attr]
    outcome = await interpreter.run_callable(fn, args, kwargs)
    if outcome.error is not None:
        return _failed(outcome.error, metadata)
    try:
        buffers = serialize_object(outcome.value)
    except SerializationError as exc:  # an unpicklable result: say what, keep serving
        return _failed(interpreter.report_error(exc), metadata)
    metadata["status"] = "ok"
    metadata["completed"] = utc_now_iso()
    if engine.signs_buffers:  # on ipc the transport authenticates: no digest to compute
        metadata["buffers_hmac"] = server.session.signer.sign_buffers(buffers)
    return Reply({"status": "ok"}, metadata, buffers)


_codec_cache: list[tuple[DeserializeCall, SerializeObject]] = []


def _codec() -> tuple[DeserializeCall, SerializeObject]:
    """``(deserialize_call, serialize_object)``, imported at the first task (an engine starts
    without cloudpickle) and kept: an import statement per task cost a lookup of its own."""
    if not _codec_cache:
        from ..protocol._serialize import deserialize_call, serialize_object

        _codec_cache.append((deserialize_call, serialize_object))
    return _codec_cache[0]


def with_shared_memory(
    handler: ShellHandler, server: KernelServer, engine: EngineIdentity
) -> ShellHandler:
    """``handler`` (the whole ``apply_request`` chain: abort list, records, the call), with
    large buffers through the cluster's shared memory (``parallel/protocol/_shm.py``).

    Outermost, so that everything inside sees the data itself: the request's buffers
    mapped from their files (each name unlinked at once: this engine owns it), and the
    reply's buffers as the call made them; only the reply sent to the client carries
    references, to files the client unlinks when it maps them. So a durable record
    (``_recorder``, inside) holds the mapped or original buffers, never a name.
    """
    shm = engine.shm
    if shm is None:
        return handler
    parts_per_buffer = write_parts()

    async def sharing(request: Message, identities: list[bytes]) -> Reply | None:
        refs = request.metadata.get(METADATA_KEY)
        if refs is not None:
            try:
                buffers = shm.resolve(request.buffers, refs)
            except SharedMemoryError as exc:
                started: JSONDict = {"engine": engine.uuid, "engine_id": engine.id}
                started["started"] = utc_now_iso()
                return _failed(server.interpreter.report_error(exc), started)
            # Without the references: its record holds the data, and no names of files
            # that are gone (db_query shows a record's metadata).
            metadata = {k: v for k, v in request.metadata.items() if k != METADATA_KEY}
            request = dataclasses.replace(request, metadata=metadata, buffers=buffers)
        reply = await handler(request, identities)
        if reply is None or not reply.buffers:
            return reply
        results = reply.buffers
        # A plain result's one small pickle (most tasks) is never shared: asked without
        # SharedDir.large's pass over memoryviews.
        first = results[0]
        if len(results) == 1 and type(first) is bytes and len(first) < shm.minimum.minimum(1):
            return reply
        large = shm.large(results, 1)
        client = request.header.get("session")
        if not large or not shm.shares_with("c", client, cached=False):
            return reply  # a client on another host, closed, or with shared memory off
        buffers, staged = list(reply.buffers), []
        for index in large:
            # In parts written at once by several threads (_write_threads: why).
            parts = shm.stage_split(buffers[index], parts_per_buffer, run_at_once)
            if parts is None:  # a full tmpfs: this one goes over the wire
                continue
            if len(parts) == 1:
                staged.append([index, *parts[0]])
            else:
                staged.append([index, [name for name, _ in parts], [size for _, size in parts]])
            buffers[index] = b""
        if not staged:
            return reply
        # A new Reply: the recorder may still hold the old one's buffers and metadata.
        return Reply(reply.content, {**reply.metadata, METADATA_KEY: staged}, buffers)

    return sharing


def _failed(error: JSONDict, metadata: JSONDict) -> Reply:
    metadata.update(status="error", completed=utc_now_iso())
    return Reply({"status": "error", **error}, metadata)


def interactive_in(fn: types.FunctionType, namespace: dict[str, object]) -> types.FunctionType:
    """``fn`` with ``namespace`` as its globals if it was defined in ``__main__``.

    Names ``fn`` reads from its own (pickled) globals that ``namespace`` lacks are added to
    ``namespace``; names it already has keep the engine's value.
    """
    if fn.__module__ != "__main__" or fn.__globals__ is namespace:
        return fn
    for name in global_names(fn.__code__):
        if name in fn.__globals__ and name not in namespace:
            namespace[name] = fn.__globals__[name]
    bound = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    bound.__kwdefaults__ = fn.__kwdefaults__
    bound.__qualname__ = fn.__qualname__
    bound.__dict__.update(fn.__dict__)
    return bound


def _interactive_arg(arg: object, namespace: dict[str, object]) -> object:
    return interactive_in(arg, namespace) if isinstance(arg, types.FunctionType) else arg
