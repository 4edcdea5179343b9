"""Key-level tests: the real console prompt, keys through a pipe, a real kernel.

See ``_console_harness.py``. Each test types what a user would and checks
what the kernel ran (its outputs and execution counts).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _console_harness import KERNELS, console_on, isolate, run, slow_kernelspec, wait_until
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from kernel import KernelClient, KernelManager, connect_client
from kernel.client._tasks import open_task_set
from kernel.protocol import JSONDict
from shell.console._link import KernelLink
from shell.console._prompt import ConsoleUI
from shell.console._repl import InteractiveConsole
from shell.console._terminal import Terminal
from shell.render._output import OutputRenderer

pytestmark = pytest.mark.peer

UP = "\x1b[A"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
F2 = "\x1bOQ"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


@pytest.mark.parametrize("kernel", KERNELS)
def test_multiline_follows_is_complete(kernel: str) -> None:
    async def scenario() -> None:
        async with console_on(kernel) as h:
            h.send("for i in range(3):\r")
            # The kernel said "incomplete" and how to indent the next line.
            await h.until(lambda: h.buffer.text == "for i in range(3):\n    ")
            h.send("print(i * 10)\r")
            await h.until(lambda: h.buffer.text.endswith("print(i * 10)\n    "))
            h.send("\r")  # a blank line ends the block: it runs
            await h.until(lambda: h.at_prompt(2))
            assert h.output.split() == ["0", "10", "20"]

    run(scenario)


def test_keys_typed_while_the_kernel_decides_keep_their_order() -> None:
    async def scenario() -> None:
        async with console_on("loom") as h:
            # Everything at once: each Enter's keys-after are held until it is decided.
            h.send("for i in range(2):\rprint('row', i)\r\rprint('next')\r")
            await h.until(lambda: h.at_prompt(3))
            assert h.lines() == ["row 0", "row 1", "next"]

    run(scenario)


@pytest.mark.parametrize("kernel", KERNELS)
def test_ctrl_c_clears_the_line(kernel: str) -> None:
    async def scenario() -> None:
        async with console_on(kernel) as h:
            h.send("1/0")
            await h.until(lambda: h.buffer.text == "1/0")
            h.send("\x03")
            await h.until(lambda: h.buffer.text == "" and h.at_prompt(1))
            h.send("40 + 2\r")
            await h.until(lambda: h.at_prompt(2))
            assert h.lines() == ["Out[1]: 42"]  # nothing else ran: no ZeroDivisionError

    run(scenario)


@pytest.mark.parametrize("kernel", KERNELS)
def test_tab_shows_kernel_completions_with_types(kernel: str) -> None:
    async def scenario() -> None:
        async with console_on(kernel) as h:
            h.send("zz_alpha = 1; zz_alphabet = 'x'\r")
            await h.until(lambda: h.at_prompt(2))
            h.send("zz_al\t")
            # The common part is inserted, the menu lists both with their types.
            await h.until(lambda: h.buffer.complete_state is not None)
            state = h.buffer.complete_state
            assert state is not None
            await h.until(lambda: h.buffer.text == "zz_alpha")
            names = {c.display_text: c.display_meta_text for c in state.completions}
            assert set(names) == {"zz_alpha", "zz_alphabet"}
            assert all(names.values()), names  # e.g. "instance" / "statement"
            h.send("\x03import collec\t")
            await h.until(lambda: h.buffer.text == "import collections")  # the only match
            h.send("\r")
            await h.until(lambda: h.at_prompt(3))

    run(scenario)


def test_up_searches_history_by_prefix(tmp_path: Path) -> None:
    history = InMemoryHistory()
    for entry in ["print('hist-a')", "x = 1", "print('hist-b')", "y = 2"]:
        history.append_string(entry)

    async def scenario() -> None:
        async with console_on("loom", history=history) as h:
            h.send("print(")
            await h.until(lambda: h.buffer.text == "print(")
            h.send(UP)
            await h.until(lambda: h.buffer.text == "print('hist-b')")
            h.send(UP)
            await h.until(lambda: h.buffer.text == "print('hist-a')")
            h.send("\r")
            await h.until(lambda: h.at_prompt(2))
            assert h.lines() == ["hist-a"]
            assert history.get_strings()[-1] == "print('hist-a')"

    run(scenario)


@pytest.mark.parametrize("kernel", KERNELS)
def test_bracketed_paste_runs_as_one_cell(kernel: str) -> None:
    async def scenario() -> None:
        async with console_on(kernel) as h:
            h.send(f"{PASTE_START}a = 1\nb = a + 1\nprint('sum', a + b)\n{PASTE_END}")
            await h.until(lambda: h.buffer.text == "a = 1\nb = a + 1\nprint('sum', a + b)\n")
            h.send("\r")
            await h.until(lambda: h.at_prompt(2))  # one execution, not three
            assert h.lines() == ["sum 3"]

    run(scenario)


@pytest.mark.parametrize("kernel", KERNELS)
def test_background_output_appears_above_the_live_prompt(kernel: str) -> None:
    async def scenario() -> None:
        async with console_on(kernel) as h:
            h.send("import threading; threading.Timer(0.3, lambda: print('bg-output')).start()\r")
            await h.until(lambda: h.at_prompt(2))
            h.send("abc")  # the prompt is live, with text typed
            await h.until(lambda: "bg-output" in h.output)
            assert h.at_prompt(2)
            assert h.buffer.text == "abc"  # untouched

    run(scenario)


def test_f2_shows_help_for_the_name_at_the_cursor() -> None:
    async def scenario() -> None:
        async with console_on("loom") as h:
            h.send("len")
            await h.until(lambda: h.buffer.text == "len")
            h.send(F2)
            await h.until(lambda: "Return the number of items" in h.output)
            assert h.buffer.text == "len"

    run(scenario)


def test_question_mark_pages_help() -> None:
    async def scenario() -> None:
        async with console_on("loom") as h:
            h.send("len?\r")
            await h.until(lambda: h.at_prompt(2))
            assert "Return the number of items" in h.output

    run(scenario)


def test_input_is_answered_at_a_nested_prompt() -> None:
    async def scenario() -> None:
        async with console_on("loom") as h:
            h.send("name = input('who? '); print('hello', name)\r")
            await h.until(lambda: h.ui._aux is not None and h.ui._aux.app.is_running)
            h.send("bob\r")
            await h.until(lambda: h.at_prompt(2))
            assert h.lines() == ["hello bob"]

    run(scenario)


def test_ctrl_r_searches_history_backwards() -> None:
    history = InMemoryHistory()
    for entry in ["print('first-entry')", "x = 1", "print('second')"]:
        history.append_string(entry)

    async def scenario() -> None:
        async with console_on("loom", history=history) as h:
            h.send("\x12first")  # Ctrl-R, then the text to find
            app = h.ui.session.app
            await h.until(lambda: app.current_buffer.text == "first")  # the search field
            h.send("\r")  # accept the match into the line
            await h.until(lambda: h.buffer.text == "print('first-entry')")
            assert app.layout.has_focus(h.buffer)
            h.send("\r")
            await h.until(lambda: h.at_prompt(2))
            assert h.lines() == ["first-entry"]

    run(scenario)


def test_front_end_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\necho "print(\'from-editor\')" > "$1"\n')
    editor.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(editor))
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no clipboard tool can be found

    async def scenario() -> None:
        async with console_on("loom") as h:
            h.send("%cpaste\r")
            await h.until(lambda: h.ui._aux is not None and h.ui._aux.app.is_running)
            h.send("a = 20\rprint('pasted', a + 1)\r--\r")
            await h.until(lambda: h.at_prompt(2))
            assert h.lines()[-1] == "pasted 21"
            h.send("%edit\r")
            await h.until(lambda: h.at_prompt(3))
            assert h.lines()[-1] == "from-editor"
            h.send("%paste\r")
            await h.until(lambda: "no clipboard tool found" in h.output)
            h.send("%connect_info\r")
            await h.until(lambda: '"shell_port"' in h.output)
            h.send("%restart\r")  # not ours to restart: says so, kernel untouched
            await h.until(lambda: "cannot restart it" in h.output)
            h.send("print('count', a)\r")
            await h.until(lambda: h.at_prompt(4))
            assert h.lines()[-1] == "count 20"
            h.send("exit\r")
            async with asyncio.timeout(10):
                assert await h.task == 0

    run(scenario)


def record_is_complete(client: KernelClient) -> list[str]:
    """The code of every ``is_complete`` request ``client`` sends from now on."""
    asked: list[str] = []
    is_complete = client.is_complete

    async def recording(code: str, **kw: Any) -> JSONDict:
        asked.append(code)
        return await is_complete(code, **kw)

    client.is_complete = recording  # type: ignore[method-assign]
    return asked


def test_enter_falls_back_to_a_local_guess_while_the_kernel_is_slow() -> None:
    async def scenario() -> None:
        async with console_on("loom") as h:
            os.kill(h.kernel_pid, signal.SIGSTOP)  # silent, but not yet "not responding"
            try:
                # The kernel is stopped throughout: only the local guess can decide.
                h.send("def f():\r")
                await h.until(lambda: h.buffer.text == "def f():\n    ")
                h.send("return 1\r")  # the local guess dedents after return...
                await h.until(lambda: h.buffer.text == "def f():\n    return 1\n")
            finally:
                os.kill(h.kernel_pid, signal.SIGCONT)
            h.send("\x03def g():\rreturn 2\r")
            # ...the kernel keeps the indent: it is asked again, not given up on.
            await h.until(lambda: h.buffer.text == "def g():\n    return 2\n    ")

    run(scenario)


def test_enter_uses_the_local_guess_at_once_while_the_kernel_is_busy() -> None:
    async def scenario() -> None:
        async with console_on("loom") as h:
            # Another request keeps the kernel busy (as another client's cell would).
            client = h.console.link.client
            asked = record_is_complete(client)
            busy = asyncio.ensure_future(client.execute("import time; time.sleep(3)"))
            await h.until(lambda: h.console.link.state == "busy")
            h.send("x = [\r")
            await h.until(lambda: h.buffer.text == "x = [\n")
            assert not busy.done()  # decided while the kernel was busy...
            assert asked == []  # ...without asking it (no wait for the kernel at all)
            await busy

    run(scenario)


def test_output_streams_while_the_cell_runs_and_toolbar_reports_it() -> None:
    async def scenario() -> None:
        async with console_on("loom") as h:
            h.send("import time; print('fir' + 'st'); time.sleep(1.5); print('second')\r")
            await h.until(lambda: "first" in h.output)
            assert "second" not in h.output  # shown before the cell ended
            assert not h.at_prompt(2)
            await h.until(lambda: h.at_prompt(2))
            toolbar = "".join(text for _, text, *_ in h.ui._toolbar())
            assert "loom" in toolbar
            assert "idle" in toolbar
            assert re.search(r"last cell 1\.\d\d s", toolbar), toolbar

    run(scenario)


def test_vi_mode() -> None:
    async def scenario() -> None:
        async with console_on("loom", vi_mode=True) as h:
            h.send("print('vi' + 'm')\x1b")  # Escape: navigation mode
            await h.until(lambda: h.buffer.text == "print('vi' + 'm')")
            h.send("0xi#\x1b")  # to the start, delete 'p', insert '#': now a comment
            await h.until(lambda: h.buffer.text == "#rint('vi' + 'm')")
            h.send("uu")  # undo twice: back to the original line
            await h.until(lambda: h.buffer.text == "print('vi' + 'm')")
            h.send("\r")  # Enter runs the cell from navigation mode too
            await h.until(lambda: h.at_prompt(2))
            assert h.lines() == ["vim"]

    run(scenario)


@pytest.mark.parametrize("kernel", KERNELS)
def test_other_clients_cells_appear_with_their_input(kernel: str) -> None:
    async def scenario() -> None:
        async with console_on(kernel) as h:
            h.send("abc")  # at a live prompt, text typed
            await h.until(lambda: h.buffer.text == "abc")
            async with connect_client(h.console.link.client.info) as other:
                await other.execute("print('from' + '-other')")
            await h.until(lambda: "from-other" in h.output)
            assert "[another client] In [1]: print('from' + '-other')" in h.lines()
            await h.until(lambda: h.at_prompt(2))  # the prompt number follows the kernel
            assert h.buffer.text == "abc"

    run(scenario)


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_complete_single_line_runs_without_asking_the_kernel(kernel: str) -> None:
    async def scenario() -> None:
        async with console_on(kernel) as h:
            asked = record_is_complete(h.console.link.client)
            h.send("x = 40 + 2\r")
            await h.until(lambda: h.at_prompt(2))
            h.send("for i in range(2): print(i + x)\r")  # a one-line block runs at once too
            await h.until(lambda: h.at_prompt(3))
            assert asked == []
            assert h.lines() == ["42", "43"]
            h.send("%time y = 1\r")  # a line magic: complete on any IPython kernel
            await h.until(lambda: h.at_prompt(4))
            assert asked == []
            h.send("%%time\r")  # a cell magic: the kernel decides (it waits for a body)
            await h.until(lambda: h.buffer.text == "%%time\n")
            h.send("\x03if x:\r")  # an open block: the kernel decides, and indents
            await h.until(lambda: h.buffer.text == "if x:\n    ")
            assert asked == ["%%time", "if x:"]

    run(scenario)


@dataclass
class Starting:
    """A console on a kernel that is still starting (see :func:`starting_console`)."""

    link: KernelLink
    ui: ConsoleUI
    console: InteractiveConsole
    keys: PipeInput
    out: io.StringIO
    task: asyncio.Task[int]

    async def until(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        await wait_until(self.task, predicate, timeout)


@asynccontextmanager
async def starting_console(name: str) -> AsyncIterator[Starting]:
    """The console as ``loom --kernel NAME`` builds it: the prompt up before the kernel."""
    link = KernelLink.starting(KernelManager(name), name)
    async with open_task_set() as tasks:
        serving = tasks.spawn(link.serve())
        tasks.spawn(link.watch())
        try:
            with create_pipe_input() as keys:
                out = io.StringIO()
                ui = ConsoleUI(link, input=keys, output=DummyOutput(), stdout=out)
                renderer = OutputRenderer(out, ansi=False)
                console = InteractiveConsole(link, ui, renderer, Terminal(out, tasks=tasks))
                task = tasks.spawn(console.run())
                s = Starting(link, ui, console, keys, out, task)
                await s.until(lambda: ui.is_live)
                yield s
                keys.send_text("exit\r")
                async with asyncio.timeout(10):
                    assert await task == 0
        finally:
            await link.shutdown()
            await serving


def test_a_cell_entered_while_the_kernel_starts_runs_once_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = slow_kernelspec(tmp_path, monkeypatch, seconds=1.0)

    async def scenario() -> None:
        async with starting_console(name) as s:
            toolbar = "".join(text for _, text, *_ in s.ui._toolbar())
            assert "starting" in toolbar  # the prompt is up, the kernel is not
            s.keys.send_text("print('ran', 6 * 7)\r")
            await s.until(lambda: s.console._cell is not None)
            assert not s.link.is_ready  # the cell waits...
            await s.until(lambda: s.ui.is_live and s.ui.count == 2)
            assert s.link.is_ready  # ...and ran once the kernel answered
            assert "ran 42" in s.out.getvalue()

    run(scenario)


def test_ctrl_c_stops_a_cell_waiting_for_a_starting_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = slow_kernelspec(tmp_path, monkeypatch, seconds=1.0)

    async def scenario() -> None:
        async with starting_console(name) as s:
            s.keys.send_text("print('never')\r")
            await s.until(lambda: s.console._cell is not None)
            os.kill(os.getpid(), signal.SIGINT)  # as the terminal's Ctrl-C would
            await s.until(lambda: "still starting" in s.out.getvalue())
            await s.link.wait_ready()  # the booting kernel was not disturbed
            s.keys.send_text("print('after', 1)\r")
            await s.until(lambda: "after 1" in s.out.getvalue())
            assert "never" not in s.out.getvalue()

    run(scenario)
