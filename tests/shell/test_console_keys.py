"""Key-level tests: the real console prompt, keys through a pipe, a real kernel.

See ``_console_harness.py``. Each test types what a user would and checks
what the kernel ran (its outputs and execution counts).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _console_harness import KERNELS, console_on, isolate, run
from prompt_toolkit.history import InMemoryHistory

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
            assert h.at_prompt(2) and h.buffer.text == "abc"  # untouched

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
