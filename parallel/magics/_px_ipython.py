"""The ``%px`` magics in IPython (terminal IPython, ipykernel, so jupyter console, JupyterLab
and nbclient): ``%load_ext parallel`` and ``rc.activate()``.

IPython's magics are synchronous, so the magics' coroutines run with ``run_blocking``:
each wait pumps the client's sockets in place (no thread, no loop). Ctrl-C raises
``KeyboardInterrupt`` in the pump; the engines still running get the configured signal.

Output: text is printed (ipykernel sends it as stream output), displays and progress go
through ``IPython.display``. A ``PxError`` is left for IPython to show: it calls the
error's ``_render_traceback_``, which gives the grouped tracebacks.

``%autopx`` replaces the shell's ``transform_cell`` on the instance (deleting it restores
the class's): while on, a cell becomes ``%%px`` + the cell, except a cell whose first line
is ``%autopx``. (ipyparallel replaces ``run_cell``; the transform is the smaller hook, and
``check_complete`` does not use it, so typing a cell feels the same.)
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._px_magics import PxMagics, PxSession, autopx_transform
from ._px_output import PxOutput, PxProgress, PxRich, PxText, progress_bundle
from ._px_parse import PxUsageError
from ._px_run import Emit, run_blocking

if TYPE_CHECKING:
    from ..client._views import DirectView

__all__ = ["activate_ipython", "load_ipython_extension", "unload_ipython_extension"]

T = TypeVar("T")
#: IPython's marker for magics whose line must not be ``$var``-expanded (``no_var_expand``).
_NO_VAR_EXPAND = "_ipython_magic_no_var_expand"
_SESSIONS: weakref.WeakKeyDictionary[Any, PxSession] = weakref.WeakKeyDictionary()


class IPythonHost:
    """What the magics need of an IPython shell (see ``PxHost``)."""

    blocking = True

    def __init__(self, shell: Any) -> None:
        self._shell = shell
        self._progress: Any = None  # the DisplayHandle of the run's progress line

    @property
    def user_ns(self) -> dict[str, Any]:
        return self._shell.user_ns  # type: ignore[no-any-return]

    def emit(self, item: PxOutput) -> None:
        from IPython.display import display, publish_display_data

        if isinstance(item, PxText):
            stream = sys.stderr if item.stream == "stderr" else sys.stdout
            stream.write(item.text)
            stream.flush()
        elif isinstance(item, PxRich):
            publish_display_data(data=item.data, metadata=item.metadata)  # type: ignore[no-untyped-call]
        else:
            self._show_progress(item, display)

    def _show_progress(self, item: PxProgress, display: Callable[..., Any]) -> None:
        bundle = progress_bundle(item)
        if self._progress is None:
            self._progress = display(bundle, raw=True, display_id=True)
        else:
            self._progress.update(bundle, raw=True)
        if item.final:
            self._progress = None

    def run_local(self, code: str) -> None:
        self._shell.run_cell(code, store_history=False)

    def background(
        self, run: Callable[[Emit], Coroutine[Any, Any, None]]
    ) -> asyncio.Task[None] | None:
        # ipykernel runs cells on its asyncio loop, and a task copies the cell's context,
        # where ipykernel keeps the parent header: its output belongs to this cell.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None  # terminal IPython: no loop runs between cells
        return loop.create_task(run(self.emit))

    def set_autopx(self, magics: PxMagics | None) -> None:
        shell = self._shell
        overridden = "transform_cell" in vars(shell)
        if magics is None:
            if overridden:
                del shell.transform_cell  # the class's method shows through again
            return
        if overridden:
            raise PxUsageError("%autopx is already on for other engines; turn that off first")
        shell.transform_cell = autopx_transform(shell.transform_cell, magics.suffix)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext parallel`` in IPython: the ``%px`` family and ``%cluster``."""
    session = _session(ipython)
    px, new = session.magics("")
    if new:
        _register(ipython, px)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext parallel``: remove the magics; stop a cluster ``%cluster`` started."""
    session = _SESSIONS.pop(ipython, None)
    if session is None:
        return
    tables = ipython.magics_manager.magics
    for suffix in session.sets:
        for name in ("px", "pxresult", "pxconfig", "autopx"):
            tables["line"].pop(f"{name}{suffix}", None)
        tables["cell"].pop(f"px{suffix}", None)
    tables["line"].pop("cluster", None)
    _remove_matcher(ipython, session)
    session.close()


def activate_ipython(ipython: Any, view: DirectView, suffix: str) -> None:
    """``rc.activate(targets, suffix)`` in IPython: the ``suffix`` set runs on ``view``."""
    px, new = _session(ipython).magics(suffix, view)
    if new:
        _register(ipython, px)


def _session(ipython: Any) -> PxSession:
    session = _SESSIONS.get(ipython)
    if session is None:
        session = _SESSIONS[ipython] = PxSession(IPythonHost(ipython))
        cluster = _line(session.cluster)
        ipython.register_magic_function(cluster, "line", "cluster")
        _add_matcher(ipython, session)
    return session


def _add_matcher(ipython: Any, session: PxSession) -> None:
    """Complete ``%px`` code from an engine's namespace (``_px_complete``): a matcher of
    IPython's completer (API v2) that, when it answers, suppresses the local matchers."""
    completer = getattr(ipython, "Completer", None)
    matchers = getattr(completer, "custom_matchers", None)
    if not isinstance(matchers, list):
        return  # not an IPython with a completer we know: local completion only
    from IPython.core.completer import SimpleCompletion, context_matcher

    @context_matcher()  # type: ignore[untyped-decorator]
    def px_matcher(context: Any) -> dict[str, Any]:
        text: str = context.full_text
        lines = text.split("\n")
        cursor = sum(len(line) + 1 for line in lines[: context.cursor_line])
        cursor += context.cursor_position
        try:
            reply = run_blocking(session.complete(text, cursor))
        except Exception:  # completion must never break the shell
            reply = None
        if reply is None:
            return {"completions": [], "suppress": False}
        # IPython replaces the token before the cursor: each match, cut to that token.
        token_start = cursor - len(context.token)
        start = int(reply.get("cursor_start", cursor))
        before = text[start:token_start] if start <= token_start else None
        completions = [
            SimpleCompletion(match[len(before) :], type="px")
            for match in reply.get("matches", [])
            if before is not None and isinstance(match, str) and match.startswith(before)
        ]
        return {"completions": completions, "suppress": bool(completions)}

    px_matcher.px_session = session  # so unloading finds it
    matchers.append(px_matcher)


def _remove_matcher(ipython: Any, session: PxSession) -> None:
    matchers = getattr(getattr(ipython, "Completer", None), "custom_matchers", None)
    if isinstance(matchers, list):
        matchers[:] = [m for m in matchers if getattr(m, "px_session", None) is not session]


def _register(ipython: Any, px: PxMagics) -> None:
    s = px.suffix
    line = _line(px.px)
    setattr(line, _NO_VAR_EXPAND, True)  # the code goes to the engines as typed
    ipython.register_magic_function(line, "line", f"px{s}")
    ipython.register_magic_function(_cell(px.px_cell), "cell", f"px{s}")
    ipython.register_magic_function(_line(px.pxresult), "line", f"pxresult{s}")
    ipython.register_magic_function(_plain(px.pxconfig), "line", f"pxconfig{s}")
    ipython.register_magic_function(_plain(px.autopx), "line", f"autopx{s}")


def _line(method: Callable[[str], Coroutine[Any, Any, T]]) -> Callable[[str], T]:
    def magic(line: str) -> T:
        __tracebackhide__ = True  # IPython leaves such frames out of tracebacks
        return _translated(lambda: run_blocking(method(line)))

    magic.__doc__ = method.__doc__
    return magic


def _cell(method: Callable[[str, str], Coroutine[Any, Any, T]]) -> Callable[[str, str], T]:
    def magic(line: str, cell: str) -> T:
        __tracebackhide__ = True
        return _translated(lambda: run_blocking(method(line, cell)))

    magic.__doc__ = method.__doc__
    return magic


def _plain(method: Callable[[str], T]) -> Callable[[str], T]:
    def magic(line: str) -> T:
        return _translated(lambda: method(line))

    magic.__doc__ = method.__doc__
    return magic


def _translated(call: Callable[[], T]) -> T:
    """Run a magic: its usage errors become IPython's; Ctrl-C ends the cell with a
    ``KeyboardInterrupt`` whose traceback is the cell's line, not the magics' frames."""
    from IPython.core.error import UsageError

    __tracebackhide__ = True
    try:
        return call()
    except PxUsageError as exc:
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt from None  # the engines were signalled and told so
