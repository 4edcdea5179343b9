"""The prompt as a terminal sees it: the bottom toolbar and the vi mode indicator.

The prompt draws through prompt_toolkit's real VT100 output into a
``StringIO`` that says it is a terminal, so cursor position requests are made
and the test answers them as a terminal would (``ESC [ row ; col R``).
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output

from shell.console._link import KernelLink
from shell.console._prompt import ConsoleUI

ROWS = 10


class Screen(io.StringIO):
    """What the prompt writes; a terminal as far as prompt_toolkit can tell."""

    def isatty(self) -> bool:
        return True


def console_ui(keys: PipeInput, screen: Screen, *, vi_mode: bool = False) -> ConsoleUI:
    """The console's prompt on a link with no kernel (call in a running loop)."""
    output = Vt100_Output(screen, lambda: Size(rows=ROWS, columns=80), term="xterm")
    return ConsoleUI(KernelLink(None, None, "tb"), input=keys, output=output, vi_mode=vi_mode)


def message(ui: ConsoleUI) -> str:
    return "".join(text for _, text, *_ in ui._message())


async def until(task: asyncio.Task[Any], predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            assert not task.done(), task
            await asyncio.sleep(0.005)


@pytest.mark.parametrize("row", [ROWS, ROWS - 1, 1], ids=["last row", "next to last", "top"])
def test_the_toolbar_is_drawn_once_the_terminal_reports_the_cursor(
    row: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 9 of issue 15: on the last row the toolbar stayed away until a key press."""
    monkeypatch.delenv("PROMPT_TOOLKIT_NO_CPR", raising=False)

    async def scenario() -> None:
        screen = Screen()
        with create_pipe_input() as keys:
            ui = console_ui(keys, screen)
            task = asyncio.create_task(ui.read_cell(1))
            await until(task, lambda: "\x1b[6n" in screen.getvalue())  # the request
            await until(task, lambda: "In [" in screen.getvalue())
            assert "F2 help" not in screen.getvalue()  # the height is not known yet
            drawn = len(screen.getvalue())
            keys.send_text(f"\x1b[{row};1R")  # the terminal's answer, and no key after it
            await until(task, lambda: "F2 help" in screen.getvalue()[drawn:])
            keys.send_text("\x04")  # Ctrl-D on an empty line: the prompt ends
            with pytest.raises(EOFError):
                await task

    asyncio.run(scenario())


def test_vi_mode_shows_insert_or_navigation_before_the_prompt() -> None:
    """Item 10 of issue 15: IPython's ``[ins]``/``[nav]``; Emacs mode shows nothing."""

    async def scenario() -> None:
        screen = Screen()
        with create_pipe_input() as keys:
            ui = console_ui(keys, screen, vi_mode=True)
            task = asyncio.create_task(ui.read_cell(1))
            await until(task, lambda: "[ins] " in screen.getvalue())
            assert message(ui) == "[ins] In [1]: "
            drawn = len(screen.getvalue())
            keys.send_text("x = 1\x1b")  # Escape: navigation mode
            await until(task, lambda: message(ui) == "[nav] In [1]: ")
            await until(task, lambda: "nav" in screen.getvalue()[drawn:])  # redrawn
            assert ui.session.default_buffer.text == "x = 1"
            drawn = len(screen.getvalue())
            keys.send_text("i")  # back to insert mode
            await until(task, lambda: message(ui) == "[ins] In [1]: ")
            await until(task, lambda: "ins" in screen.getvalue()[drawn:])
            keys.send_text("\r")
            assert await task == "x = 1"
        with create_pipe_input() as keys:
            ui = console_ui(keys, Screen())
            assert message(ui) == "In [1]: "

    asyncio.run(scenario())
