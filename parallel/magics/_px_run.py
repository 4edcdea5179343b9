"""Running ``%px`` code on engines and following it: submit, stream, wait, show, raise.

Theory of operation
-------------------
:func:`submit_px` sends one ``execute_request`` per target engine (``silent=False`` and
``store_history=True``, as ipyparallel's ``%px``: the engines number their cells, which
gives ``Out[2:5]``). :func:`follow_px` then waits for the result, showing streamed
output and progress as it goes, and :func:`finish_px` shows what is left (grouped, see
``_px_output``) and raises :class:`PxError` if any engine failed. :func:`run_px` is the
three in a row.

Waiting is a :data:`Waiter`, so the same code serves both hosts without threads:
:func:`wait_on_loop` awaits the client's sockets on the running loop (Loom's kernel: the
control channel stays live and an interrupt cancels the wait), :func:`wait_blocking`
pumps them in place (IPython's magics are synchronous). A coroutine whose waits all block
never suspends, so :func:`run_blocking` finishes it with one ``send``: no loop at all.

Ctrl-C (``KeyboardInterrupt`` while pumping, or the cell task's cancellation) sends the
configured signal to the engines still running, says so on stderr, and propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from kernel.protocol._message import NO_EXECUTE_INPUT

from .._errors import EngineError, ParallelError
from ._px_output import (
    EngineOutput,
    PxError,
    PxOutput,
    PxProgress,
    PxText,
    StreamLabeller,
    display_output,
    format_engines,
    group_errors,
    render_outputs,
)
from ._px_parse import PxUsageError, Targets

if TYPE_CHECKING:
    from ..client._asyncresult import AsyncResult
    from ..client._pool_client import Client
    from ..client._pool_client import Targets as ClientTargets
    from ..client._views import DirectView

__all__ = [
    "STATUS_AFTER",
    "STOP_GRACE",
    "Emit",
    "PxSettings",
    "Shown",
    "Waiter",
    "announce",
    "finish_px",
    "follow_px",
    "records",
    "run_blocking",
    "run_px",
    "stream_in_background",
    "submit_px",
    "wait_blocking",
    "wait_on_loop",
]

Emit = Callable[[PxOutput], None]
#: The metadata of every ``%px`` execute_request (the client copies it per request).
_QUIET_INPUT = {NO_EXECUTE_INPUT: True}
#: Seconds a blocking run waits before it first reports its progress (status line).
STATUS_AFTER = 0.25
#: Seconds engines get to stop after Ctrl-C sent them a signal before they are named.
STOP_GRACE = 3.0
#: ``await wait(client, done, timeout)``: returns once ``done()`` or after ``timeout`` s.
Waiter = Callable[["Client", Callable[[], bool], float | None], Awaitable[None]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PxSettings:
    """One ``%px`` run's choices, defaults filled in (see ``PxConfig.resolve``)."""

    targets: Targets | None = None  # None: the view's targets
    block: bool = True
    stream: bool = True
    groupby: str = "engine"
    verbose: bool = False
    signal: int = int(signal.SIGINT)
    progress_after: float = 2.0


async def wait_on_loop(client: Client, done: Callable[[], bool], timeout: float | None) -> None:
    """Wait on the running loop for ``done()``, at most ``timeout`` seconds (None: no limit)."""
    try:
        async with asyncio.timeout(timeout):
            await client._pump.wait_until(done)
    except TimeoutError:
        return


#: Seconds :func:`wait_then_loop` pumps in place before it waits on the loop.
SPIN = 0.005


async def wait_then_loop(client: Client, done: Callable[[], bool], timeout: float | None) -> None:
    """:func:`wait_on_loop`, after pumping in place for up to :data:`SPIN` seconds.

    Most ``%px`` runs of small code are answered within a few milliseconds: pumping for
    them directly saves the loop's wake-ups (a selector round, futures, a timer) per
    message. An interrupt waits at most that long to cancel the wait.
    """
    spin = SPIN if timeout is None else min(SPIN, timeout)
    if client._pump.pump_until(done, spin) or (timeout is not None and timeout <= spin):
        return
    await wait_on_loop(client, done, None if timeout is None else timeout - spin)


async def wait_blocking(client: Client, done: Callable[[], bool], timeout: float | None) -> None:
    """Pump the client's sockets in place until ``done()`` or ``timeout``: never suspends."""
    client._pump.pump_until(done, timeout)


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (its waits are :func:`wait_blocking`) to the end.

    Raises ``RuntimeError`` if it does suspend (it awaited something that needs a loop).
    """
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a blocking %px step tried to wait on an event loop")


def submit_px(
    view: DirectView, targets: Targets | None, code: str, *, setup: bool = False
) -> tuple[AsyncResult, list[int]]:
    """Send ``code`` to the engines of ``targets`` (None: the view's); the result and ids.

    ``setup`` (``--setup``): first record ``code`` with the controller, for these engines
    (all engines, later ones too, when the targets are all), as ``view.setup`` does: an
    engine that replaces a dead one runs it before it takes work.

    Raises :class:`PxUsageError` naming the registered engines when a target does not exist.
    """
    from ..client._asyncresult import AsyncResult

    client = view.client
    chosen = view.targets if targets is None else targets
    ids = _resolve(client, chosen)
    if setup:
        everyone = chosen is None or chosen == "all"
        client.record_setup(code, None if everyone else ids)
    content = {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": False,
    }
    # No execute_input echo: nothing here shows it, and it was a message per engine.
    # One call for all engines: the requests' shared JSON frames are encoded once.
    msg_ids = client.send_requests(ids, "execute_request", content, metadata=_QUIET_INPUT)
    result = AsyncResult(client, msg_ids, fname="%px", single=isinstance(chosen, int))
    return client.track(result), ids


def _resolve(client: Client, targets: ClientTargets) -> list[int]:
    try:
        return client.resolve_targets(targets)
    except (IndexError, TypeError) as exc:  # NoEnginesRegistered is an IndexError
        ids = client.ids
        if not ids:
            raise PxUsageError("no engines are registered in this cluster") from None
        raise PxUsageError(
            f"targets {_describe(targets)}: {exc}; the cluster has {format_engines(ids)}"
        ) from None


def _describe(targets: ClientTargets) -> str:
    if isinstance(targets, slice):
        parts = [targets.start, targets.stop, targets.step]
        return ":".join("" if p is None else str(p) for p in parts)
    return str(targets)


async def run_px(
    view: DirectView,
    settings: PxSettings,
    code: str,
    emit: Emit,
    wait: Waiter = wait_on_loop,
) -> AsyncResult:
    """Run ``code`` on the engines as ``settings`` say; the :class:`AsyncResult`.

    Non-blocking: returns as soon as the code is sent. Blocking: shows the engines' output
    through ``emit`` and returns once all answered, raising :class:`PxError` if any failed.
    Raises :class:`PxUsageError` for targets that do not exist.
    """
    result, ids = submit_px(view, settings.targets, code)
    announce(ids, settings, emit)
    if settings.block:
        await follow_px(result, ids, settings, emit, wait)
    return result


def announce(ids: list[int], settings: PxSettings, emit: Emit) -> None:
    """``--verbose``: say where the code runs."""
    if settings.verbose:
        mode = "Parallel" if settings.block else "Async parallel"
        emit(PxText("stdout", f"{mode} execution on {format_engines(ids)}\n"))


async def follow_px(
    result: AsyncResult,
    ids: list[int],
    settings: PxSettings,
    emit: Emit,
    wait: Waiter,
    shown: Shown | None = None,
) -> None:
    """Wait for ``result`` (streaming output and progress as ``settings`` say), then
    :func:`finish_px`. ``shown``: what a background follower already showed of it.

    On Ctrl-C, signals the engines still running, names those that do not stop within
    :data:`STOP_GRACE` seconds, and re-raises.
    """
    client = result._client
    shown = shown or Shown(result, ids)
    cursor, labeller = shown.cursor, shown.labeller
    progress = _Progress(result, settings.progress_after)
    stream = settings.stream or shown.streamed

    def worth_waking() -> bool:
        return result.done() or (stream and cursor.has_new()) or progress.changed()

    lost = _LostWatch(result, ids)
    try:
        while not result.done():
            await wait(client, worth_waking, progress.next_timeout())
            if result.done():
                break  # what is left is shown once, below (most runs: one wait, no pass)
            if stream:
                _emit_all(emit, cursor.take(labeller))
            _emit_all(emit, lost.take())
            _emit_all(emit, progress.update())
    except (KeyboardInterrupt, asyncio.CancelledError):
        _emit_all(emit, progress.stop())
        await _interrupt(result, ids, settings.signal, emit, wait)
        raise
    if stream:
        _emit_all(emit, cursor.take(labeller, final=True))
    _emit_all(emit, lost.take())
    _emit_all(emit, progress.update())
    finish_px(result, ids, settings.groupby, emit, labeller, streamed=stream)


class Shown:
    """What of one result's streams and displays is on screen already (its cursor and
    labeller), shared by a ``--noblock`` run's background follower and ``%pxresult``."""

    def __init__(self, result: AsyncResult, ids: list[int]) -> None:
        self.result = result
        self.ids = ids
        self.cursor = _Cursor(result, ids)
        self.labeller = StreamLabeller()
        #: True once a follower streamed anything: the rest must be streamed too.
        self.streamed = False


async def stream_in_background(shown: Shown, emit: Emit, wait: Waiter) -> None:
    """Show a ``--noblock`` run's streams and displays as the engines produce them, until
    it is done; its values and errors are left to ``%pxresult``."""
    result, cursor, labeller = shown.result, shown.cursor, shown.labeller
    shown.streamed = True
    client = result._client

    def worth_waking() -> bool:
        return result.done() or cursor.has_new()

    while True:
        finished = result.done()
        _emit_all(emit, cursor.take(labeller, final=finished))
        if finished:
            for stream in ("stdout", "stderr"):
                _emit_all(emit, [t for t in [labeller.break_line(stream)] if t])
            return
        await wait(client, worth_waking, None)


def finish_px(
    result: AsyncResult,
    ids: list[int],
    groupby: str,
    emit: Emit,
    labeller: StreamLabeller | None = None,
    *,
    streamed: bool = False,
) -> None:
    """Show a finished result's output (only its values if ``streamed``); raise
    :class:`PxError` with the grouped failures if any engine failed."""
    outputs = records(result, ids)
    _emit_all(emit, render_outputs(outputs, groupby, labeller, streamed=streamed))
    groups = group_errors(outputs)
    if groups:
        raise PxError(groups, [r.error for r in outputs if r.error is not None])


def records(result: AsyncResult, ids: list[int]) -> list[EngineOutput]:
    """What each engine of ``result`` produced (``ids[i]`` ran ``result.msg_ids[i]``)."""
    out = []
    for engine, task in zip(ids, result._tasks.values(), strict=True):
        record = EngineOutput(engine, "".join(task.stdout), "".join(task.stderr))
        for output in task.outputs:
            content = {k: v for k, v in output.items() if k != "msg_type"}
            if output.get("msg_type") == "execute_result":
                record.result = content
            elif output.get("msg_type") == "display_data":
                record.displays.append(content)
        record.error = task.error
        out.append(record)
    return out


def _emit_all(emit: Emit, items: list[PxOutput]) -> None:
    for item in items:
        emit(item)


async def _interrupt(
    result: AsyncResult, ids: list[int], sig: int, emit: Emit, wait: Waiter
) -> None:
    """Send ``sig`` to the engines whose task has not finished (0: send nothing), then
    wait up to :data:`STOP_GRACE` seconds for them and name those still running."""
    running = _running(result, ids)
    if not sig or not running:
        return
    try:
        result._client.send_signal(sig, running)
    except ParallelError:
        return  # those engines are gone: nothing left to interrupt
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    emit(PxText("stderr", f"Interrupted: sent {name} to {format_engines(running)}\n"))
    # A second Ctrl-C stops this wait; the engines still running are named all the same.
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        await wait(result._client, result.done, STOP_GRACE)
    still = _running(result, ids)
    if still:
        emit(
            PxText(
                "stderr",
                f"{format_engines(still).capitalize()} did not stop within {STOP_GRACE:g} s "
                "and may still be running\n",
            )
        )


def _running(result: AsyncResult, ids: list[int]) -> list[int]:
    return [e for e, task in zip(ids, result._tasks.values(), strict=True) if not task.done]


class _Cursor:
    """Which stream text and displays of each task were already shown (streaming).

    Text is shown by whole lines (a line ends with ``\n`` or ``\r``): engines print in
    pieces (``print("x", 1)`` may arrive as ``x``, `` 1``, ``\n``), and pieces of several
    engines interleaved would split every line between labels.
    """

    def __init__(self, result: AsyncResult, ids: list[int]) -> None:
        self._tasks = list(zip(ids, result._tasks.values(), strict=True))
        self._shown = [[0, 0, 0] for _ in self._tasks]
        self._partial = [["", ""] for _ in self._tasks]

    def has_new(self) -> bool:
        # Asked after every read of the sockets while a run waits: a plain loop, no tuples.
        for (_, t), seen in zip(self._tasks, self._shown, strict=True):
            if len(t.stdout) != seen[0] or len(t.stderr) != seen[1] or len(t.outputs) != seen[2]:
                return True
        return False

    def take(self, labeller: StreamLabeller, *, final: bool = False) -> list[PxOutput]:
        """New lines (labelled; with ``final`` or once a task is done, its unfinished line
        too) and new displays."""
        out: list[PxOutput] = []
        for index, (engine, task) in enumerate(self._tasks):
            seen, partial = self._shown[index], self._partial[index]
            for which, (name, chunks) in enumerate(
                (("stdout", task.stdout), ("stderr", task.stderr))
            ):
                pending = partial[which] + "".join(chunks[seen[which] :])
                seen[which] = len(chunks)
                whole = final or task.done  # a finished task's last line is complete
                cut = len(pending) if whole else max(pending.rfind("\n"), pending.rfind("\r")) + 1
                partial[which] = pending[cut:]
                text = labeller.label(name, engine, pending[:cut])
                if text is not None:
                    out.append(text)
            for output in task.outputs[seen[2] :]:
                if output.get("msg_type") == "display_data":
                    line_end = labeller.break_line("stdout")  # a display starts on a new line
                    if line_end is not None:
                        out.append(line_end)
                    out.append(display_output(engine, output))
            seen[2] = len(task.outputs)
        return out


class _LostWatch:
    """Engines that died while the others still run are named at once (one line per
    wake: ``engines 1, 3 lost (...)``), not only when the whole run ends."""

    def __init__(self, result: AsyncResult, ids: list[int]) -> None:
        self._tasks = list(zip(ids, result._tasks.values(), strict=True))
        self._named: set[int] = set()

    def take(self) -> list[PxOutput]:
        fresh = [
            EngineOutput(engine, error=task.error)
            for engine, task in self._tasks
            if task.done and isinstance(task.error, EngineError) and engine not in self._named
        ]
        self._named.update(record.engine for record in fresh)
        return [PxText("stderr", f"{group.headline}\n") for group in group_errors(fresh)]


class _Progress:
    """When a blocking run reports its progress (a :class:`PxProgress`).

    Quick runs report nothing. From :data:`STATUS_AFTER` seconds (or ``after``, if
    sooner) it reports, then again whenever an engine finishes or the elapsed whole
    seconds change, and a last time when all are done (``final``). From ``after``
    seconds (negative: never) the reports are ``bar``: shown as a progress line by any
    front end, not only in the Loom console's status line.
    """

    def __init__(self, result: AsyncResult, after: float) -> None:
        self._result = result
        self._after = after
        self._first = STATUS_AFTER if after < 0 else min(STATUS_AFTER, after)
        self._shown: tuple[int, int, bool] | None = None  # (done, whole seconds, bar)
        self._closed = False

    def next_timeout(self) -> float | None:
        """Seconds until the next report is due by time alone (None: never)."""
        if self._closed:
            return None
        elapsed = self._result.elapsed
        if self._shown is None:
            return max(0.0, self._first - elapsed)
        due = int(elapsed) + 1 - elapsed
        if self._after >= 0 and not self._shown[2]:
            due = min(due, self._after - elapsed)
        return max(0.0, due)

    def changed(self) -> bool:
        return self._shown is not None and self._result.progress != self._shown[0]

    def update(self) -> list[PxOutput]:
        result = self._result
        if self._closed:
            return []
        elapsed, finished = result.elapsed, result.done()
        if self._shown is None and (finished or elapsed < self._first):
            return []  # quick results show no progress at all
        bar = self._after >= 0 and elapsed >= self._after
        key = (result.progress, int(elapsed), bar)
        if key == self._shown and not finished:
            return []
        self._shown = key
        self._closed = finished
        total = len(result.msg_ids)
        return [PxProgress(result.progress, total, elapsed, final=finished, bar=bar)]

    def stop(self) -> list[PxOutput]:
        """The last report of a run abandoned (Ctrl-C) while reporting, if one is due."""
        if self._shown is None or self._closed:
            return []
        self._closed = True
        result = self._result
        bar = self._shown[2]
        return [PxProgress(result.progress, len(result.msg_ids), result.elapsed, True, bar)]
