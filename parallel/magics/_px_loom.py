"""The ``%px`` magics on Loom's kernel: ``%load_ext parallel`` and ``rc.activate()``.

Every waiting magic is registered ``is_async``: the cell awaits it on the kernel's loop,
so while engines run, the kernel keeps answering its control channel and an interrupt
cancels the wait (``_px_run`` then signals the engines). Output goes where a cell's goes:
text to ``sys.stdout``/``sys.stderr``, displays and progress through the interpreter's
``publish``.

``%autopx`` wraps the interpreter's ``transform`` (the hook that turns a cell's IPython
syntax into Python): while it is on, a cell becomes ``%%px`` + the cell, except a cell
whose first line is ``%autopx`` itself.

Errors: a usage problem is the kernel's ``UsageError`` (one line, no traceback). Loom's
kernel does not use IPython's ``_render_traceback_``, so when engines fail the grouped
tracebacks are written to stderr and the cell fails with a short ``PxError`` naming them.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from kernel.server.magics import CANNOT_AWAIT, UsageError

from ._px_magics import PxMagics, PxSession, autopx_transform
from ._px_output import PxError, PxOutput, PxProgress, PxRich, PxText, progress_bundle
from ._px_parse import PxUsageError
from ._px_run import Emit

if TYPE_CHECKING:
    from kernel.server.magics import Magics

    from ..client._views import DirectView

__all__ = ["activate_loom", "current_loom_magics", "load_loom_extension", "unload_loom_extension"]

T = TypeVar("T")
_SESSIONS: weakref.WeakKeyDictionary[Magics, PxSession] = weakref.WeakKeyDictionary()
_SHELL_MODULE = "kernel.server.interpreter._ipython_shell"


class LoomHost:
    """What the magics need of Loom's kernel (see ``PxHost``)."""

    def __init__(self, magics: Magics) -> None:
        self._magics = magics
        self._original_transform: Callable[[str], str] | None = None
        self._progress_id: str | None = None

    @property
    def blocking(self) -> bool:
        """A cell awaits the magics on the kernel's loop; ``get_ipython().run_line_magic``
        cannot await, so its waits pump in place (``CANNOT_AWAIT``)."""
        return CANNOT_AWAIT.get()

    @property
    def user_ns(self) -> dict[str, Any]:
        return self._magics.interpreter.user_ns

    def emit(self, item: PxOutput) -> None:
        if isinstance(item, PxText):
            stream = sys.stderr if item.stream == "stderr" else sys.stdout
            stream.write(item.text)
        elif isinstance(item, PxRich):
            content = {"data": item.data, "metadata": item.metadata, "transient": {}}
            self._magics.interpreter.publish("display_data", content)
        else:
            self._progress(item)

    def _progress(self, item: PxProgress) -> None:
        """One display per run, updated in place (``update_display_data``)."""
        kind = "display_data" if self._progress_id is None else "update_display_data"
        if self._progress_id is None:
            self._progress_id = f"px-progress-{uuid.uuid4().hex}"
        content = {
            "data": progress_bundle(item),
            "metadata": {},
            "transient": {"display_id": self._progress_id},
        }
        self._magics.interpreter.publish(kind, content)
        if item.final:
            self._progress_id = None

    def background(
        self, run: Callable[[Emit], Coroutine[Any, Any, None]]
    ) -> asyncio.Task[None] | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return loop.create_task(run(self._cell_emitter()))

    def _cell_emitter(self) -> Emit:
        """An ``emit`` whose output keeps the current cell as its parent after the cell
        ended (``sys.stdout`` follows whatever request the kernel serves then)."""
        publish = self._cell_publisher()

        def emit(item: PxOutput) -> None:
            if isinstance(item, PxText):
                publish("stream", {"name": item.stream, "text": item.text})
            elif isinstance(item, PxRich):
                content = {"data": item.data, "metadata": item.metadata, "transient": {}}
                publish("display_data", content)

        return emit

    def _cell_publisher(self) -> Callable[[str, Any], None]:
        interpreter = self._magics.interpreter
        # The interpreter publishes through the server's _publish_for_current; the server
        # can also publish with a parent of our choosing (the request being served now).
        server = getattr(interpreter.publish, "__self__", None)
        parent = getattr(server, "current", None)
        publish_with_parent = getattr(server, "publish", None)
        if parent is None or not callable(publish_with_parent):
            return interpreter.publish  # a bare interpreter (tests): no requests to mix up

        def publish(msg_type: str, content: Any) -> None:
            publish_with_parent(msg_type, content, parent)

        return publish

    def run_local(self, code: str) -> None:
        from kernel.server.interpreter._compile import compile_body

        site = self._magics.call_site
        compile_body(code, site.filename, site.lineno + 1, want_value=False).run(
            site.globals, site.locals
        )

    def set_autopx(self, magics: PxMagics | None) -> None:
        interpreter: Any = self._magics.interpreter  # Interpreter.transform: the cell hook
        if magics is None:
            if self._original_transform is not None:
                interpreter.transform = self._original_transform
                self._original_transform = None
            return
        if self._original_transform is not None:
            raise PxUsageError("%autopx is already on for other engines; turn that off first")
        original: Callable[[str], str] = interpreter.transform
        interpreter.transform = autopx_transform(original, magics.suffix)
        self._original_transform = original


def load_loom_extension(magics: Magics) -> None:
    """``%load_ext parallel``: ``%px``, ``%%px``, ``%pxresult``, ``%pxconfig``, ``%autopx``
    and ``%cluster`` on the newest running cluster (or the one ``%cluster start`` starts)."""
    session = _session(magics)
    px, new = session.magics("")
    if new:
        _register(magics, px)


def unload_loom_extension(magics: Magics) -> None:
    """``%unload_ext parallel``: remove the magics; stop a cluster ``%cluster`` started."""
    session = _SESSIONS.pop(magics, None)
    if session is None:
        return
    for suffix in list(session.sets):
        for kind, name in _names(suffix):
            table = magics.line if kind == "line" else magics.cell
            table.pop(name, None)
            magics.async_names.discard(("%" if kind == "line" else "%%") + name)
    magics.line.pop("cluster", None)
    magics.async_names.discard("%cluster")
    interpreter: Any = magics.interpreter
    if getattr(interpreter, "complete_hook", None) == session.complete:
        interpreter.complete_hook = None
    session.close()


def current_loom_magics() -> Magics | None:
    """The magics of the Loom kernel this code runs in (loading ``parallel`` on them), or
    None when this is not Loom's kernel."""
    module = sys.modules.get(_SHELL_MODULE)
    if module is None:
        return None
    try:
        shell = module.current_shell()
    except RuntimeError:
        return None
    user_ns = shell.user_ns
    found = _find(user_ns)
    if found is None:
        shell.run_line_magic("load_ext", "parallel")  # calls load_loom_extension(magics)
        found = _find(user_ns)
    return found


def _find(user_ns: dict[str, Any]) -> Magics | None:
    return next((m for m in list(_SESSIONS) if m.interpreter.user_ns is user_ns), None)


def activate_loom(magics: Magics, view: DirectView, suffix: str) -> None:
    """``rc.activate(targets, suffix)`` in Loom's kernel: the ``suffix`` set runs on ``view``."""
    px, new = _session(magics).magics(suffix, view)
    if new:
        _register(magics, px)


def _session(magics: Magics) -> PxSession:
    session = _SESSIONS.get(magics)
    if session is None:
        session = _SESSIONS[magics] = PxSession(LoomHost(magics))
        magics.register_line("cluster", _line(session.host, session.cluster), is_async=True)
        # The kernel's complete_request consults this first: engine-bound code completes
        # from an engine's namespace (_px_complete).
        interpreter: Any = magics.interpreter
        interpreter.complete_hook = session.complete
    return session


def _names(suffix: str) -> list[tuple[str, str]]:
    return [
        ("line", f"px{suffix}"),
        ("cell", f"px{suffix}"),
        ("line", f"pxresult{suffix}"),
        ("line", f"pxconfig{suffix}"),
        ("line", f"autopx{suffix}"),
    ]


def _register(magics: Magics, px: PxMagics) -> None:
    host = px.host
    s = px.suffix
    magics.register_line(f"px{s}", _line(host, px.px), expand=False, is_async=True)
    magics.register_cell(f"px{s}", _cell(host, px.px_cell), is_async=True)
    magics.register_line(f"pxresult{s}", _line(host, px.pxresult), is_async=True)
    magics.register_line(f"pxconfig{s}", _plain(px.pxconfig))
    magics.register_line(f"autopx{s}", _plain(px.autopx))


def _line(host: Any, method: Callable[[str], Awaitable[T]]) -> Callable[[str], Awaitable[T]]:
    async def magic(args: str) -> T:
        __tracebackhide__ = True
        return await _translated(host, method(args))

    magic.__doc__ = method.__doc__
    return magic


def _cell(
    host: Any, method: Callable[[str, str], Awaitable[T]]
) -> Callable[[str, str], Awaitable[T]]:
    async def magic(args: str, body: str) -> T:
        __tracebackhide__ = True
        return await _translated(host, method(args, body))

    magic.__doc__ = method.__doc__
    return magic


def _plain(method: Callable[[str], T]) -> Callable[[str], T]:
    def magic(args: str) -> T:
        __tracebackhide__ = True
        try:
            return method(args)
        except PxUsageError as exc:
            raise UsageError(str(exc)) from None

    magic.__doc__ = method.__doc__
    return magic


async def _translated(host: LoomHost, awaitable: Awaitable[T]) -> T:
    """Await a magic; its usage errors become the kernel's, its engine errors are shown."""
    __tracebackhide__ = True
    try:
        return await awaitable
    except PxUsageError as exc:
        raise UsageError(str(exc)) from None
    except PxError as exc:
        host.emit(PxText("stderr", "\n".join(exc.render_traceback()) + "\n"))
        raise exc.with_traceback(None) from None
