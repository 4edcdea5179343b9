"""Running a document's cells one by one on a :class:`BatchKernel`.

Each ``execute_request`` is raced against the kernel's death and, with
``--timeout``, against a deadline; nothing here can hang on a dead kernel.
On a deadline the kernel is interrupted and gets :data:`INTERRUPT_GRACE`
seconds to answer with its ``KeyboardInterrupt`` error.

``input()`` in a cell is answered from our stdin with a *blocking*
``readline()``. This is deliberate: the kernel is blocked in ``input()`` until
we answer, so there is nothing else the run could do meanwhile, and reading
stdin without blocking would take a thread (forbidden in ``shell/``) or an
fd reader that cannot watch regular files (``loom run x.py < answers.txt``).
The loop pauses while we read; iopub messages queue up in ZeroMQ and are shown
afterwards, and the kernel's heartbeat is not judged on the missed time
(the monitor sees the queued echoes as soon as the loop runs again).
"""

from __future__ import annotations

import asyncio
import enum
import sys
from dataclasses import dataclass

from kernel import KernelError
from kernel.client._tasks import Outcome as Settled
from kernel.client._tasks import open_task_set, settled
from kernel.protocol import Message

from ._cell_names import CellNames
from ._kernel_target import BatchKernel
from ._notebook import NotebookRecorder
from ._report import OutputWriter, Renderer, RunSummary
from ._source import RAISES_TAG, Cell, Document

__all__ = ["INTERRUPT_GRACE", "CellRunner", "RunSettings"]

#: An ``execute_request`` under way: its task, which ends with the reply or the error.
Execution = asyncio.Task[Settled[Message]]
#: Seconds a timed-out cell has to end after the interrupt before we give up on it.
INTERRUPT_GRACE = 5.0
#: Loop turns to let already-received iopub output be shown before an input prompt
#: (the prompt comes on the stdin channel, the output that preceded it on iopub).
_SETTLE_TURNS = 5


class Outcome(enum.Enum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    STUCK = "stuck"  # timed out and ignored the interrupt
    DIED = "died"


@dataclass(frozen=True, slots=True)
class RunSettings:
    """The options that shape how cells run."""

    allow_errors: bool = False
    timeout: float | None = None
    stdin_is_source: bool = False


class CellRunner:
    """Runs the runnable cells of a document, shows and records their outputs."""

    def __init__(
        self,
        kernel: BatchKernel,
        document: Document,
        settings: RunSettings,
        renderer: Renderer,
        writer: OutputWriter,
        recorder: NotebookRecorder | None = None,
        names: CellNames | None = None,
    ) -> None:
        self.kernel = kernel
        self.names = names
        self.document = document
        self.settings = settings
        self.renderer = renderer
        self.writer = writer
        self.recorder = recorder
        self.summary = RunSummary()
        self._cell: Cell | None = None

    # -- the run ------------------------------------------------------------

    async def run_all(self) -> RunSummary:
        """Run every runnable cell in order; stop as the options say. Never raises."""
        cells = self.document.runnable
        for position, cell in enumerate(cells):
            outcome = await self.run_cell(cell)
            self.summary.cells += 1
            if self._must_stop(cell, outcome, more=position + 1 < len(cells)):
                break
        self._conclude()
        return self.summary

    def _must_stop(self, cell: Cell, outcome: Outcome, *, more: bool) -> bool:
        """Enter ``outcome`` in the summary; True if the run ends after ``cell``."""
        if outcome is Outcome.DIED:
            return True
        if outcome is not Outcome.OK:
            self.summary.failed.append(cell.index)
            if outcome is not Outcome.ERROR:
                self.summary.timed_out.append(cell.index)
            if outcome is Outcome.STUCK or (more and not self.settings.allow_errors):
                if more:
                    self._note(f"{self._name(cell)} failed; not running the remaining cells")
                return True
        if self.writer.broken and more:
            self.summary.status = "error"
            self.summary.message = "stdout was closed; not running the remaining cells"
            self._note(self.summary.message)
            return True
        return False

    def _conclude(self) -> None:
        summary = self.summary
        if summary.status == "kernel_died":
            return
        if summary.failed:
            summary.status = "error"
            names = ", ".join(str(index) for index in summary.failed)
            which = "cells" if summary.errors > 1 else "cell"
            summary.message = f"{summary.errors} of {summary.cells} cells failed ({which} {names})"
            if self.settings.allow_errors:
                self._note(summary.message)

    async def run_cell(self, cell: Cell) -> Outcome:
        """Execute one cell and return how it went (the reply is awaited or given up on)."""
        self._cell = cell
        if self.recorder is not None:
            self.recorder.begin(cell.index)
        request = self.kernel.client.execute(
            cell.source,
            on_output=lambda message: self._on_output(cell, message),
            on_input=self._on_input,
            stop_on_error=not self.settings.allow_errors,
        )
        # The request is a task of its own, raced against death and the deadline;
        # leaving the task set stops waiting for a reply that is given up on.
        async with open_task_set() as tasks:
            return await self._await_reply(cell, tasks.spawn(settled(request)))

    async def _await_reply(self, cell: Cell, execute: Execution) -> Outcome:
        state = await self._race(execute, self.settings.timeout)
        timed_out = state == "timeout"
        if timed_out:
            self._note(
                f"{self._name(cell)} timed out after {self.settings.timeout:g} s; "
                "interrupting the kernel"
            )
            await self._interrupt()
            state = await self._race(execute, INTERRUPT_GRACE)
            if state == "timeout":
                self._note(f"the kernel did not stop within {INTERRUPT_GRACE:g} s of the interrupt")
                return Outcome.STUCK
        if state == "died":
            self._kernel_died(cell, execute)
            return Outcome.DIED
        reply = execute.result().unwrap()
        if self.recorder is not None:
            self.recorder.finish(cell.index, reply.content.get("execution_count"))
        return Outcome.TIMEOUT if timed_out else self._judge(cell, reply)

    async def _race(self, execute: Execution, timeout: float | None) -> str:
        """``"reply"``, ``"died"`` or ``"timeout"``: what happened first.

        A reply that arrived wins over a death noticed in the same turn.
        """
        died = self.kernel.died
        await asyncio.wait((execute, died), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if execute.done():
            # An error is KernelDied: the client failed its requests.
            return "died" if execute.result().error is not None else "reply"
        return "died" if died.done() else "timeout"

    async def _interrupt(self) -> None:
        try:
            await self.kernel.interrupt()
        except (KernelError, TimeoutError) as exc:
            self._note(f"could not interrupt the kernel: {exc or type(exc).__name__}")

    def _judge(self, cell: Cell, reply: Message) -> Outcome:
        status = reply.content.get("status")
        if status == "ok":
            return Outcome.OK
        if status == "error" and RAISES_TAG in cell.tags:
            return Outcome.OK  # the notebook says this error is expected (nbclient's rule)
        if status != "error":
            self._note(f"{self._name(cell)} was not run: the kernel answered {status!r}")
        return Outcome.ERROR

    def _kernel_died(self, cell: Cell, execute: Execution) -> None:
        reason = self.kernel.died.result() if self.kernel.died.done() else None
        if reason is None and execute.done() and not execute.cancelled():
            reason = str(execute.result().error)
        message = f"the {self.kernel.label} died while running {self._name(cell)}: {reason}"
        self.summary.status = "kernel_died"
        self.summary.message = message
        self._note(message)

    # -- callbacks ------------------------------------------------------------

    def _on_output(self, cell: Cell, message: Message) -> None:
        if message.msg_type == "execute_input":
            if self.names is not None:
                self.names.ran(message.content.get("execution_count"), cell)
            return
        self.renderer.output(cell.index, message)
        if self.recorder is not None:
            self.recorder.add(cell.index, message)

    async def _on_input(self, prompt: str, password: bool) -> str:
        """Answer ``input()`` with a line of our stdin (see the module docstring)."""
        for _ in range(_SETTLE_TURNS):
            await asyncio.sleep(0)
        index = self._cell.index if self._cell is not None else -1
        self.renderer.input_requested(index, prompt, password)
        if self.settings.stdin_is_source:
            self._note("input() was called, but stdin holds the script: answering ''")
            return ""
        line = read_stdin_line()
        if line is None:
            self._note("input() was called, but stdin is at end of file: answering ''")
            return ""
        return line

    # -- helpers --------------------------------------------------------------

    def _name(self, cell: Cell) -> str:
        return cell.describe(self.document.label)

    def _note(self, text: str) -> None:
        self.writer.note(text)


def read_stdin_line() -> str | None:
    """One line of stdin without its line ending, or None at end of file (blocking)."""
    if sys.stdin is None:
        return None
    try:
        line = sys.stdin.readline()
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not line:
        return None
    return line.removesuffix("\n").removesuffix("\r")
