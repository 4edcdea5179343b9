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

import types
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kernel.protocol import JSONDict, Message, Reply, SignatureError, utc_now_iso

from .._errors import SerializationError

if TYPE_CHECKING:
    from kernel.server import KernelServer

__all__ = ["EngineIdentity", "handle_apply", "interactive_in"]


@dataclass(frozen=True, slots=True)
class EngineIdentity:
    """Who an engine is in its cluster."""

    id: int
    uuid: str
    #: Whether buffers carry their own digest: not where the transport admits only this
    #: user (``ControllerInfo.authenticates_peers``).
    signs_buffers: bool = True


async def handle_apply(
    server: KernelServer, engine: EngineIdentity, request: Message, identities: list[bytes]
) -> Reply:
    """Answer one ``apply_request`` (registered in ``shell_handlers`` by ``make_engine``)."""
    # Imported at the first task: an engine starts without cloudpickle.
    from ..protocol._serialize import deserialize_call, serialize_object

    interpreter = server.interpreter
    metadata: JSONDict = {"engine": engine.uuid, "engine_id": engine.id, "started": utc_now_iso()}
    signer = server.session.signer
    try:
        # Unpickling runs code: only buffers signed with the cluster's key are loaded.
        if engine.signs_buffers:
            signer.verify_buffers(request.buffers, request.metadata.get("buffers_hmac"))
        fn, args, kwargs = deserialize_call(request.buffers)
    except (SerializationError, SignatureError) as exc:
        return _failed(interpreter.report_error(exc), metadata)
    namespace = interpreter.user_ns
    fn = interactive_in(fn, namespace) if isinstance(fn, types.FunctionType) else fn
    # A map's function travels as an argument of the chunk runner: it too is interactive.
    args = tuple(
        interactive_in(a, namespace) if isinstance(a, types.FunctionType) else a for a in args
    )
    outcome = await interpreter.run_callable(fn, args, kwargs)
    if outcome.error is not None:
        return _failed(outcome.error, metadata)
    try:
        buffers = serialize_object(outcome.value)
    except SerializationError as exc:  # an unpicklable result: say what, keep serving
        return _failed(interpreter.report_error(exc), metadata)
    metadata.update(status="ok", completed=utc_now_iso())
    if engine.signs_buffers:  # on ipc the transport authenticates: no digest to compute
        metadata["buffers_hmac"] = signer.sign_buffers(buffers)
    return Reply({"status": "ok"}, metadata, buffers)


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
    for name in _global_names(fn.__code__):
        if name in fn.__globals__ and name not in namespace:
            namespace[name] = fn.__globals__[name]
    bound = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    bound.__kwdefaults__ = fn.__kwdefaults__
    bound.__qualname__ = fn.__qualname__
    bound.__dict__.update(fn.__dict__)
    return bound


def _interactive_arg(arg: object, namespace: dict[str, object]) -> object:
    return interactive_in(arg, namespace) if isinstance(arg, types.FunctionType) else arg


def _global_names(code: types.CodeType) -> set[str]:
    """Names ``code`` and the code nested in it (comprehensions, inner functions) read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names
