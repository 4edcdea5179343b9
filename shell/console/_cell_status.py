"""The toolbar while our own cell runs: one status line under the cell's output.

prompt_toolkit's bottom toolbar belongs to the prompt, and no prompt is on
screen while a cell runs (the terminal is in cooked mode, output streams
straight to it). So the console draws a line of its own in the toolbar's
colours, `` loom │ busy │ Ctrl-C interrupts ``, on the cursor's line below the
output, and takes it off before anything is written: output always lands on
a clean line and the status line never reaches the scrollback. The ``%px``
status line (:mod:`._px_view`) uses the same place; while it is up, this one
stays hidden.

The line shows up only once the cell has run for :data:`SHOW_AFTER` seconds
(the console calls :meth:`CellStatus.reveal` then): most cells are done
sooner, and drawing it, redrawing it at each state change (busy, idle) and
erasing it were four writes per cell, and a flicker.

:class:`CellStatus` only remembers whether the line is drawn and whether a
cell runs; the console calls it on the terminal's ordered queue
(``Terminal.call``), so nothing races with other output.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import TextIO

__all__ = ["SHOW_AFTER", "CellStatus"]

#: Seconds a cell runs before its status line shows (see the module doc).
SHOW_AFTER = 0.15

#: The toolbar's colours (``bottom-toolbar`` in ``_prompt``): #c0c0c0 on #303030.
BAR_STYLE = "\x1b[0;38;5;250;48;5;236m"
_RESET = "\x1b[0m"
_ERASE_LINE = "\r\x1b[K"


class CellStatus:
    """The status line's state; see the module doc.

    ``text()`` gives the line (escapes allowed, in :data:`BAR_STYLE`), ``ansi``
    False (plain mode) means never draw, ``at_line_start()`` whether the cursor
    is at column 0 (an unfinished line of output is completed first), and
    ``hidden()`` whether something else has the line (a prompt, ``%px``'s).
    """

    def __init__(
        self,
        out: TextIO,
        *,
        ansi: bool,
        text: Callable[[int], str],
        at_line_start: Callable[[], bool],
        hidden: Callable[[], bool],
    ) -> None:
        self.out = out
        self.ansi = ansi
        self._text = text
        self._at_line_start = at_line_start
        self._hidden = hidden
        self.running = False
        self.revealed = False  # the cell has run long enough for the line to show
        self.drawn = False

    def begin(self) -> None:
        """Our cell started; the line shows once :meth:`reveal` is called."""
        self.running = True
        self.revealed = False

    def reveal(self) -> None:
        """The cell has run for :data:`SHOW_AFTER` seconds: show the line."""
        self.revealed = True
        self.draw()

    def end(self) -> None:
        """Our cell ended: take the line away for good."""
        self.running = False
        self.revealed = False
        self.erase()

    def around(self, render: Callable[[], None]) -> None:
        """Run ``render`` (which writes output) with the line out of its way."""
        self.erase()
        render()
        self.draw()

    def erase(self) -> None:
        """Take the line off the screen (the cursor is at its start)."""
        if self.drawn:
            self.out.write(_ERASE_LINE)
            self.out.flush()
            self.drawn = False

    def draw(self) -> None:
        """Show (or refresh) the line on the cursor's empty line; cursor left at its start."""
        shown = self.running and self.revealed and self.ansi
        if not shown or self._hidden() or not self._at_line_start():
            return
        width = shutil.get_terminal_size().columns - 1  # never the last column: no wrap
        self.out.write(f"{_ERASE_LINE}{BAR_STYLE}{self._text(width)}{_RESET}\r")
        self.out.flush()
        self.drawn = True

    def echoed_over(self, echo: str) -> None:
        """The terminal echoed ``echo`` (``^C``) at the line's start: show it alone."""
        if self.drawn:
            self.out.write(_ERASE_LINE + echo)
            self.out.flush()
            self.drawn = False
