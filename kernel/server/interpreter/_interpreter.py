"""Running cells: the user's namespace, execution count, results and errors.

A cell is transformed (IPython syntax such as ``%magic`` and ``!cmd`` becomes
plain Python), parsed, and compiled once with ``PyCF_ALLOW_TOP_LEVEL_AWAIT``.
If the code object is a coroutine it is awaited as a task on the kernel's
loop (top-level ``await``); otherwise it runs synchronously on the main
thread. While synchronous user code runs, the loop is hidden from asyncio
(``_set_running_loop(None)``) so ``asyncio.run()`` works inside a cell.

The value of a trailing expression is displayed as ``Out[n]`` unless the cell
ends with ``;``; ``_``, ``__``, ``___``, ``_N``, ``In`` and ``Out`` work as in
IPython.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import contextlib
import inspect
import linecache
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType, TracebackType
from typing import Any

import kernel
from kernel.protocol import JSONDict
from kernel.server.magics._args import UsageError
from kernel.server.magics._registry import Magics

from . import _inline_figures, _ipython_shell
from ._compile import ends_quietly
from ._display import Display, call_ipython_display, format_object
from ._history_requests import history_reply
from ._history_store import HistoryStore
from ._traceback import format_exception
from ._transform import transform_cell

__all__ = ["CallOutcome", "CellOutcome", "Interpreter", "Publisher"]

#: Frames from these files are the kernel's own and hidden from tracebacks. Derived from
#: the package, not from this file's depth, so moving the module cannot change it.
_KERNEL_DIR = str(Path(kernel.__file__).resolve().parent)
_LAST_VALUE = "__loom_last_value__"
#: Compiled cells kept (:meth:`Interpreter._compile`), and the longest source kept.
_CACHED_CELLS = 64
_CACHED_SOURCE_MAX = 10_000

Publisher = Callable[[str, JSONDict], None]
Transformer = Callable[[str], str]


@dataclass(slots=True)
class CallOutcome:
    """What calling a function as user code produced (:meth:`Interpreter.run_callable`)."""

    status: str = "ok"
    #: The function's return value (awaited if it was awaitable); ``None`` on error.
    value: object = None
    #: ``ename``, ``evalue``, ``traceback`` when ``status`` is ``"error"``.
    error: JSONDict | None = None


@dataclass(slots=True)
class CellOutcome:
    """What running one cell produced, ready to become an ``execute_reply``."""

    status: str = "ok"
    error: JSONDict | None = None
    payload: list[JSONDict] = field(default_factory=list)


class Interpreter:
    """One interactive Python session. Used from the main thread only."""

    def __init__(
        self,
        publish: Publisher,
        *,
        history: HistoryStore | None = None,
        transform: Transformer | None = None,
        hidden_prefixes: Sequence[str] = (_KERNEL_DIR,),
    ) -> None:
        self.publish = publish
        #: Publishes what was written to fds 1 and 2 so far (C code, child processes);
        #: the server sets it to its I/O thread's ``drain_fds``. Called before a result
        #: or an error is published, so that such output comes before ``Out[N]``.
        self.drain_fds: Callable[[], None] = _nothing
        #: Frames from files under these paths are the kernel's own: hidden from tracebacks.
        self.hidden_prefixes = list(hidden_prefixes)
        self.history = history if history is not None else HistoryStore(None)
        self.transform: Transformer = transform or self._transform
        #: Compiled cells, see :meth:`_compile`.
        self._compiled: dict[tuple[str, str, bool], tuple[CodeType, bool]] = {}
        self.display = Display(self)  # publishes through self.publish, whatever it is then
        self.execution_count = 1
        self.user_ns: dict[str, Any] = {}
        self.payload: list[JSONDict] = []
        self._cell_task: asyncio.Task[Any] | None = None
        self._running_sync = False
        # SIGINT while a cell is being prepared (transformed, compiled) is kept for
        # the moment its code starts: an interrupt sent as the cell begins is not lost.
        self._in_cell = False
        self._interrupt_pending = False
        #: Readable once the SIGINT handler has run (an eventfd: safe to write from a
        #: signal handler, and other threads can wait on it with a timeout).
        #: Created by :meth:`install_sigint_handler`.
        self.sigint_fd: int | None = None
        #: IPython's exception reporting mode (``%xmode``): Plain, Context, Verbose, Minimal.
        self.xmode = "Context"
        #: The running (or last) cell's source, error and result, for ``post_run_cell``.
        self.cell_source = ""
        self.cell_error: BaseException | None = None
        self.cell_result: object = None
        #: ``text/plain`` of each ``Out[n]`` of this session (history requests' outputs).
        self.output_texts: dict[int, str] = {}
        #: The last error's traceback, what ``%debug`` debugs (also ``sys.last_traceback``).
        self.last_traceback: TracebackType | None = None
        #: ``%pdb on``: debug every error (post-mortem) once its traceback is shown.
        self.call_pdb = False
        self.magics = Magics(self)
        self._reset_namespace()
        self._welcome_ipython_code()

    def _welcome_ipython_code(self) -> None:
        """Code written for IPython: its display API and inline figures by default, both set
        up only when user code imports IPython or matplotlib."""
        _ipython_shell.install(self)
        _inline_figures.enable_by_default(self.display)
        self.magics.post_execute.append(_inline_figures.flush_figures)
        if sys.breakpointhook is sys.__breakpointhook__:  # not a host's (pytest's) own hook
            sys.breakpointhook = self._breakpoint

    def _breakpoint(self, *args: object, **kwargs: object) -> object:
        """``breakpoint()`` in user code: pdb over the front end's stdin (``_debugger``).

        ``PYTHONBREAKPOINT`` is honoured as by Python's own hook (``0`` turns it off, a
        dotted name calls that instead).
        """
        chosen = os.environ.get("PYTHONBREAKPOINT", "")
        if chosen not in ("", "pdb.set_trace"):
            return sys.__breakpointhook__(*args, **kwargs)
        from ._debugger import set_trace

        set_trace(sys._getframe(1), self.hidden_prefixes)
        return None

    def _reset_namespace(self) -> None:
        self.user_ns.clear()
        self.user_ns.update(
            __name__="__main__",
            __builtins__=builtins,
            In=[""],
            Out={},
            _="",
            __="",
            ___="",
            _ih=None,
            _oh=None,
            display=self.display.display,
            update_display=self.display.update_display,
            clear_output=self.display.clear_output,
            get_ipython=_ipython_shell.current_shell,
        )
        self.user_ns["_ih"] = self.user_ns["In"]
        self.user_ns["_oh"] = self.user_ns["Out"]
        self.magics.install(self.user_ns)

    @property
    def is_busy(self) -> bool:
        """True while a cell is running (synchronously or as a task) or about to."""
        return self._running_sync or self._cell_task is not None or self._in_cell

    def _transform(self, raw: str) -> str:
        return transform_cell(raw, async_magics=self.magics.async_names)

    def magic_names(self) -> list[str]:
        """Names of the available magics (``%x``, ``%%x``), for completion."""
        return self.magics.names()

    def history_reply(self, request: JSONDict) -> list[list[Any]]:
        """The ``history`` list of a ``history_reply`` for a ``history_request``'s content.

        Outputs (``output=True``) are those of this session's results, as in IPython.
        """
        return history_reply(self.history, request, self.output_texts)

    # -- interrupts -------------------------------------------------------------

    def install_sigint_handler(self) -> None:
        """SIGINT interrupts user code; between cells it is ignored (never kills the loop)."""
        if self.sigint_fd is None:
            self.sigint_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        signal.signal(signal.SIGINT, self._on_sigint)

    def _reclaim_sigint(self) -> None:
        """Put the kernel's SIGINT handler back if a debugger left its own: stock pdb
        (``pdb.set_trace()``, then ``c``) installs one, and every later interrupt would
        then stop in pdb, in whatever runs next, instead of raising. A handler the user
        chose (``signal.signal(SIGINT, SIG_IGN)`` in a cell) stays, as in ipykernel: an
        engine told to ignore SIGINT must go on ignoring it (``%px`` names it then)."""
        bdb = sys.modules.get("bdb")  # no debugger ever ran if it was never imported
        if self.sigint_fd is None or bdb is None:
            return  # (before getsignal, whose enum conversion cost a few % of a small cell)
        owner = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
        if isinstance(owner, bdb.Bdb):
            signal.signal(signal.SIGINT, self._on_sigint)

    def arm_interrupt(self) -> None:
        """From now until the next cell ends, SIGINT interrupts that cell, even before it starts.

        Call it before announcing a cell (``execute_input``): a front end may send
        the interrupt as soon as it sees the announcement.
        """
        self._in_cell, self._interrupt_pending = True, False

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.sigint_fd is not None:
            os.eventfd_write(self.sigint_fd, 1)
        if self._running_sync:
            raise KeyboardInterrupt
        task = self._cell_task
        if task is not None and not task.done():
            # The loop may be asleep in its selector with nothing due for a long time
            # (``await asyncio.sleep(60)``): a plain cancel() would not wake it.
            # call_soon_threadsafe writes the loop's self-pipe, which does, and is
            # safe in a signal handler (asyncio's own signal handling does the same).
            task.get_loop().call_soon_threadsafe(task.cancel, "interrupted")
        elif self._in_cell:
            self._interrupt_pending = True

    # -- running cells ------------------------------------------------------------

    def cell_filename(self, count: int) -> str:
        return f"<cell-{count}>"

    async def run_cell(
        self, raw: str, *, silent: bool = False, store_history: bool = True
    ) -> CellOutcome:
        """Run ``raw`` and return the outcome; never raises for user errors."""
        count = self.execution_count
        filename = self.cell_filename(count)
        self.payload = []
        if store_history:
            self.user_ns["In"].append(raw)
            # Committed once the reply is out: SQLite's commit is off the round trip.
            self.history.defer_writes = True
            self.history.store(count, raw)
            asyncio.get_running_loop().call_soon(self.history.flush)
        linecache.cache[filename] = (len(raw), None, raw.splitlines(True), filename)
        outcome = CellOutcome()
        self._in_cell = True  # keeps an interrupt that arrived since arm_interrupt()
        self._run_hooks(self.magics.run_pre_execute, raw)  # e.g. autoreload
        try:
            code, has_result = self._compile(raw, filename, display_last=not silent)
            value = await self._execute(code)
            if has_result and value is not None:
                self._display_result(value, count, store_history)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                exc = KeyboardInterrupt()
            outcome.status = "error"
            self.cell_error = exc
            if _is_debugger_quit(exc):
                # ``q`` after breakpoint(): the user stopped the cell; like IPython, no
                # traceback (the reply still says error, so queued cells are aborted).
                outcome.error = {"ename": "BdbQuit", "evalue": "", "traceback": []}
            else:
                outcome.error = self.report_error(exc)
                self._remember_error(exc)
        finally:
            self._in_cell, self._interrupt_pending = False, False
            self.user_ns.pop(_LAST_VALUE, None)
            if store_history:
                self.execution_count += 1
            self._reclaim_sigint()
        self._run_hooks(self.magics.run_post_execute)  # e.g. the cell's figures
        outcome.payload = self.payload
        return outcome

    def _remember_error(self, exc: BaseException) -> None:
        """Keep ``exc`` for ``%debug`` (as IPython, in ``sys.last_*`` too); with ``%pdb on``
        debug it now."""
        if isinstance(exc, UsageError) or exc.__traceback__ is None:
            return
        self.last_traceback = exc.__traceback__
        sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__
        if self.call_pdb and not isinstance(exc, KeyboardInterrupt | SyntaxError):
            self.debug_post_mortem(exc.__traceback__)

    def debug_post_mortem(self, tb: TracebackType) -> None:
        """pdb on ``tb`` at the front end's prompt, as user code (Ctrl-C interrupts what
        runs at the pdb prompt); errors of the debugger itself are reported, not raised."""
        from ._debugger import post_mortem

        try:
            if self._running_sync:  # %debug: already inside the cell's user code
                post_mortem(tb, self.hidden_prefixes)
            else:
                self._call_as_user_code(post_mortem, (tb, self.hidden_prefixes), {})
        except BaseException as exc:
            if not _is_debugger_quit(exc):
                self.report_error(exc)

    def _run_hooks(self, run: Callable[[], None], source: str | None = None) -> None:
        """Run the pre- or post-execute callbacks (``source``: a cell is about to start);
        an exception they raise is reported, and the cell goes on."""
        if source is not None:
            self.cell_source, self.cell_error, self.cell_result = source, None, None
        try:
            run()
        except Exception as exc:
            self.report_error(exc)

    def _compile(self, raw: str, filename: str, *, display_last: bool) -> tuple[CodeType, bool]:
        source = self.transform(raw)
        # Code objects are immutable: a cell compiled before runs again as it was compiled.
        # An engine runs the same small cell over and over (``rc[:].execute("a=1")`` is
        # silent, so its filename repeats too), and parsing and compiling it was ~7% of
        # such a request's CPU on the engine (profiled).
        key = (source, filename, display_last)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compile_source(source, filename, display_last)
            if len(source) <= _CACHED_SOURCE_MAX:
                if len(self._compiled) >= _CACHED_CELLS:
                    del self._compiled[next(iter(self._compiled))]  # the oldest
                self._compiled[key] = compiled
        return compiled

    def _compile_source(
        self, source: str, filename: str, display_last: bool
    ) -> tuple[CodeType, bool]:
        tree = ast.parse(source, filename=filename, mode="exec")
        has_result = False
        last = tree.body[-1] if tree.body else None
        if display_last and isinstance(last, ast.Expr) and not ends_quietly(source):
            assign = ast.Assign(
                targets=[ast.Name(id=_LAST_VALUE, ctx=ast.Store())], value=last.value
            )
            tree.body[-1] = ast.copy_location(assign, last)
            ast.fix_missing_locations(tree)
            has_result = True
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        return compile(tree, filename, "exec", flags=flags, dont_inherit=True), has_result

    async def _execute(self, code: CodeType) -> Any:
        if code.co_flags & inspect.CO_COROUTINE:
            await self._await_as_cell(eval(code, self.user_ns))
        else:
            self._exec_sync(code)
        return self.user_ns.get(_LAST_VALUE)

    def _exec_sync(self, code: CodeType) -> None:
        self._call_as_user_code(exec, (code, self.user_ns), {})

    def _call_as_user_code(
        self, fn: Callable[..., object], args: Sequence[object], kwargs: dict[str, object]
    ) -> object:
        """``fn(*args, **kwargs)`` as synchronous user code: SIGINT raises in it, and the
        loop is hidden. Written out rather than a generator-based context manager: an
        engine calls this once per task, and the context manager took ~5 us a call where
        this takes ~2 (measured, machine loaded)."""
        loop = asyncio.get_running_loop()
        # Hide our loop so user code may call asyncio.run(); restore it after,
        # since asyncio.run() also clears the thread's current event loop.
        asyncio.events._set_running_loop(None)
        self._running_sync = True
        try:
            if self._interrupt_pending:
                raise KeyboardInterrupt
            return fn(*args, **kwargs)
        finally:
            self._running_sync = False
            asyncio.events._set_running_loop(loop)
            if _current_event_loop() is not loop:  # set_event_loop: ~3 us through the policy
                asyncio.set_event_loop(loop)

    async def _await_as_cell(self, awaitable: Awaitable[Any]) -> Any:
        """Await user code as a task that SIGINT cancels (see :meth:`_on_sigint`)."""
        self._cell_task = asyncio.ensure_future(awaitable)
        if self._interrupt_pending:
            self._cell_task.cancel("interrupted")
        try:
            return await self._cell_task
        finally:
            self._cell_task = None

    # -- calling functions (the engine's apply) -----------------------------------

    async def run_callable(
        self, fn: Callable[..., object], args: Sequence[object], kwargs: dict[str, object]
    ) -> CallOutcome:
        """Call ``fn(*args, **kwargs)`` as user code, as :meth:`run_cell` runs a cell.

        The same machinery applies: SIGINT (``interrupt_request``) raises
        ``KeyboardInterrupt`` in it, ``asyncio.run()`` works inside it, an awaitable
        result is awaited as a cancellable task, and an exception is published as an
        ``error`` message (tracebacks without the kernel's frames) and returned in the
        outcome. Never raises for errors of ``fn``. Output it prints goes to the current
        request, like a cell's.
        """
        self.arm_interrupt()
        try:
            value = self._call_as_user_code(fn, args, kwargs)
            # Most results are plain values: their exact type says they cannot be awaited,
            # without isawaitable's isinstance against an ABC (~1 us per task).
            if type(value) not in _NEVER_AWAITABLE and inspect.isawaitable(value):
                value = await self._await_as_cell(value)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                exc = KeyboardInterrupt()
            return CallOutcome(status="error", error=self.report_error(exc))
        finally:
            self._in_cell, self._interrupt_pending = False, False
        return CallOutcome(value=value)

    def _display_result(self, value: Any, count: int, store_history: bool) -> None:
        self.cell_result = value
        if store_history:
            ns = self.user_ns
            ns["___"], ns["__"], ns["_"] = ns["__"], ns["_"], value
            ns[f"_{count}"] = value
            ns["Out"][count] = value
        if call_ipython_display(value):
            return  # it displayed itself, as IPython's _ipython_display_ does
        data, metadata = format_object(value)
        if store_history and isinstance(data.get("text/plain"), str):
            self.output_texts[count] = data["text/plain"]
        self._output_so_far()
        self.publish(
            "execute_result", {"execution_count": count, "data": data, "metadata": metadata}
        )

    # -- errors --------------------------------------------------------------------

    def report_error(self, exc: BaseException) -> JSONDict:
        """Publish an ``error`` message for ``exc`` and return the reply fields."""
        if isinstance(exc, UsageError):
            # Like IPython: a misused magic is the user's typo, not a crash; no traceback.
            ename, evalue = "UsageError", str(exc)
            content = {"ename": ename, "evalue": evalue, "traceback": [f"UsageError: {evalue}"]}
            self.publish("error", content)
            return content
        try:
            ename, evalue, tb = format_exception(
                exc,
                cell_filenames=_cell_name,
                hidden_prefixes=self.hidden_prefixes,
                mode=self.xmode,
            )
        except Exception:  # the formatter must never take the kernel down
            ename, evalue = type(exc).__name__, str(exc)
            tb = traceback.format_exception(exc)
        content = {"ename": ename, "evalue": evalue, "traceback": tb}
        self._output_so_far()
        self.publish("error", content)
        return content

    def _output_so_far(self) -> None:
        """Publish the cell's fd-level output before what the kernel is about to say."""
        # If reading a capture pipe fails, the I/O thread still has the output.
        with contextlib.suppress(Exception):
            self.drain_fds()

    # -- user expressions -------------------------------------------------------

    def eval_user_expressions(self, expressions: JSONDict) -> JSONDict:
        """Evaluate each expression; errors are reported per expression, never raised."""
        results: JSONDict = {}
        for key, expr in expressions.items():
            try:
                value = eval(str(expr), self.user_ns)
                data, metadata = format_object(value)
                results[key] = {"status": "ok", "data": data, "metadata": metadata}
            except BaseException as exc:
                results[key] = {
                    "status": "error",
                    "ename": type(exc).__name__,
                    "evalue": str(exc),
                    "traceback": [],
                }
        return results


def _nothing() -> None:
    pass


def _is_debugger_quit(exc: BaseException) -> bool:
    """Whether ``exc`` is pdb's ``BdbQuit`` (bdb is imported only once a debugger ran)."""
    bdb = sys.modules.get("bdb")
    return bdb is not None and isinstance(exc, bdb.BdbQuit)


def _cell_name(filename: str) -> str | None:
    if filename.startswith("<cell-") and filename.endswith(">"):
        return f"Cell In[{filename[6:-1]}]"
    return None


#: Exact types whose values are never awaitable (no ``__await__``, not a coroutine).
_NEVER_AWAITABLE = frozenset(
    {type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset}
)


def _current_event_loop() -> object:
    """The thread's current event loop as the default policy keeps it (not creating one,
    as ``get_event_loop`` may), or None where the policy is another kind: then the caller
    sets it anyway."""
    local = getattr(asyncio.get_event_loop_policy(), "_local", None)
    return getattr(local, "_loop", None)
