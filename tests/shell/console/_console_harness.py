"""Drive the real console prompt with keys: a real kernel, a pipe for a keyboard.

``console_on(kernel)`` starts a real kernel, builds the console exactly as
``loom`` does (``ConsoleUI`` + ``InteractiveConsole``) but with prompt_toolkit's
``create_pipe_input()`` and ``DummyOutput()`` (the pattern of prompt_toolkit's
own tests/test_cli.py), and runs its loop as a task. Output goes to a
``StringIO`` without escape codes. The kernel is attached-style (no manager
in the link), so ``exit`` leaves without a question and ``start_kernel``
shuts the kernel down afterwards.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from _support import assert_no_thread_but_main
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.history import History
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from kernel import start_kernel
from kernel.client._tasks import open_task_set
from shell.console._link import KernelLink
from shell.console._prompt import ConsoleUI
from shell.console._repl import InteractiveConsole
from shell.console._terminal import Terminal
from shell.render._output import OutputRenderer

KERNELS = ["loom", "python3"]


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Private history files and runtime dir for the kernels a test starts."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("LOOM_HISTORY_FILE", str(tmp_path / "kernel_history.sqlite"))
    monkeypatch.setenv("LOOM_CONSOLE_HISTORY", str(tmp_path / "console_history"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("PYTHONASYNCIODEBUG", raising=False)


def slow_kernelspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float) -> str:
    """Register kernelspec ``slowloom``: Loom's kernel, started after ``seconds`` of sleep."""
    code = (
        f"import sys, time; time.sleep({seconds}); "
        "from kernel.server import run_kernel; sys.exit(run_kernel(sys.argv[1]))"
    )
    spec_dir = tmp_path / "jupyter" / "kernels" / "slowloom"
    spec_dir.mkdir(parents=True)
    spec = {"argv": ["python", "-c", code, "{connection_file}"], "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps({**spec, "display_name": "slow"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "slowloom"


@dataclass
class Harness:
    keys: PipeInput
    out: io.StringIO
    ui: ConsoleUI
    console: InteractiveConsole
    task: asyncio.Task[int]
    kernel_pid: int

    def send(self, text: str) -> None:
        self.keys.send_text(text)

    @property
    def buffer(self) -> Buffer:
        return self.ui.session.default_buffer

    @property
    def output(self) -> str:
        return self.out.getvalue()

    def lines(self) -> list[str]:
        """The output's non-blank lines (blank lines separate cells, as in IPython)."""
        return [line for line in self.output.split("\n") if line.strip()]

    def at_prompt(self, count: int) -> bool:
        return self.ui.session.app.is_running and self.ui.count == count

    async def until(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        """Wait until ``predicate()`` holds (checked as the loop turns).

        On a timeout, says what the console was doing: a rare CI-only timeout
        waiting for another client's output could not be reproduced locally.
        """
        try:
            await wait_until(self.task, predicate, timeout)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout} s; {self.describe()}") from None

    def describe(self) -> str:
        app = self.ui.session.app
        term = self.console.term
        pending_f = app._running_in_terminal_f  # prompt_toolkit's chain of output calls
        return (
            f"prompt running={app.is_running} count={self.ui.count}; "
            f"terminal queue={len(term._queue)} draining={term._draining!r}; "
            f"run_in_terminal pending={pending_f is not None and not pending_f.done()}; "
            f"kernel state={self.console.link.state!r}; output tail={self.output[-300:]!r}"
        )


async def wait_until(
    task: asyncio.Task[int], predicate: Callable[[], bool], timeout: float
) -> None:
    """Wait until ``predicate()`` holds while the console ``task`` runs.

    The console's state changes only as its loop turns, so the predicate is
    re-checked every few milliseconds; the console ending first is an error.
    """
    async with asyncio.timeout(timeout):
        while not predicate():
            if task.done():
                task.result()  # surface the console's exception
                raise AssertionError("the console loop ended")
            await asyncio.sleep(0.005)


@asynccontextmanager
async def console_on(
    kernel: str, history: History | None = None, *, vi_mode: bool = False, ansi: bool = False
) -> AsyncIterator[Harness]:
    """The console on a fresh ``kernel``; ``ansi``: the renderer may move the cursor
    (output then holds its escape codes)."""
    async with start_kernel(kernel) as (manager, client), open_task_set() as tasks:
        assert manager.process is not None
        link = KernelLink(client, None, kernel)
        tasks.spawn(link.watch())  # as loom does: an attached link is watched
        with create_pipe_input() as keys:
            out = io.StringIO()
            ui = ConsoleUI(
                link,
                history=history,
                vi_mode=vi_mode,
                input=keys,
                output=DummyOutput(),
                stdout=out,
            )
            renderer = OutputRenderer(out, ansi=ansi)
            console = InteractiveConsole(link, ui, renderer, Terminal(out, tasks=tasks))
            task = tasks.spawn(console.run())
            harness = Harness(keys, out, ui, console, task, manager.process.pid)
            try:
                await harness.until(lambda: harness.at_prompt(1))
                yield harness
            finally:
                if not task.done():
                    keys.send_text("\x03exit\r")  # Ctrl-C first: clear whatever is typed
                    async with asyncio.timeout(10):
                        await asyncio.wait({task})
                    task.result()


def run(scenario: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    """Run ``scenario`` in a fresh loop; afterwards no thread may remain but main."""

    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await scenario()

    asyncio.run(bounded())
    assert_no_thread_but_main()
