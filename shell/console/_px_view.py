"""What the console does with ``%px`` output: engine colours, the status line, ``[px]``.

Theory of operation
-------------------
The ``%px`` magics (``parallel/magics``) run in the kernel, Loom's or ipykernel, and
talk to the console only through ordinary iopub messages, so this works with any
kernel that loaded them:

- their stream text labels each engine's lines (``[stdout:2] ...``, ``Out[2:5]:``);
  :func:`colour_labels` gives each engine a colour of its own, by engine id, so the
  interleaved output of several engines can be told apart at a glance;
- a blocking ``%px`` reports its progress as a display of MIME type
  ``STATUS_MIME`` (``parallel.magics._px_status``), updated in place. The console does
  not print it: it shows it in a *status line*, the last line of the screen while the
  cell runs, drawn in the toolbar's colours (the prompt and its toolbar are not on
  screen while a cell runs). The line is erased before any output is written and drawn
  again after it, so it never ends up in the scrollback;
- ``%autopx`` announces itself with an ``AUTOPX_MIME`` display: while it is on, the
  prompt starts with ``[px]``.

:class:`PxView` is the state (the last progress report, the autopx flag, whether the
status line is on screen); the console calls it on the terminal's ordered queue
(``Terminal.call``), so nothing here races with other output.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from parallel.magics._px_status import read_autopx, read_status

if TYPE_CHECKING:
    from kernel.protocol import Message

__all__ = ["ENGINE_COLOURS", "PxView", "colour_labels", "is_px_signal", "status_text"]

#: SGR colours of engines 0, 1, 2...; red is left out (it means errors).
ENGINE_COLOURS = (36, 35, 33, 32, 34, 96, 95, 93, 92, 94)
_LABEL = re.compile(
    r"(?m)^(?:\x1b\[[0-9;]*m)*(\[(?:stdout|stderr|output):(\d+)\]|Out\[(\d+):\d+\]:)"
)
#: The toolbar's colours (``bottom-toolbar`` in ``_prompt``): #c0c0c0 on #303030.
_BAR_STYLE = "\x1b[0;38;5;250;48;5;236m"
_RESET = "\x1b[0m"
_BAR_WIDTH = 20


def is_px_signal(message: Message) -> bool:
    """True for ``%px``'s progress and autopx displays (nothing to print as output)."""
    if message.msg_type not in ("display_data", "update_display_data"):
        return False
    data = message.content.get("data")
    return read_status(data) is not None or read_autopx(data) is not None


def engine_colour(engine: int) -> int:
    return ENGINE_COLOURS[engine % len(ENGINE_COLOURS)]


def colour_labels(text: str) -> str:
    """``text`` with each engine label at a line start in that engine's colour."""
    if "[" not in text:
        return text

    def paint(match: re.Match[str]) -> str:
        engine = int(match.group(2) or match.group(3))
        return f"\x1b[{engine_colour(engine)}m{match.group(1)}{_RESET}"

    return _LABEL.sub(paint, text)


def status_text(status: dict[str, Any], width: int) -> str:
    """The status line for a progress report: ``%px │ 3/4 engines done │ 5 s``, plus a bar
    once ``--progress-after`` has passed; at most ``width`` cells."""
    done, total = status["done"], status["total"]
    parts = [" %px ", f" {done}/{total} engines done ", f" {_elapsed(status['elapsed'])} "]
    if status["bar"] and total > 0:
        filled = round(_BAR_WIDTH * done / total)
        parts.append(" " + "█" * filled + "░" * (_BAR_WIDTH - filled) + " ")
    parts.append(" Ctrl-C interrupts the engines ")
    return "│".join(parts)[: max(width, 0)]


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs} s"


class PxView:
    """The console's ``%px`` state; see the module doc.

    ``out`` is the terminal stream, ``ansi`` False in plain mode (no colours, no status
    line), ``at_line_start`` says whether the cursor is at column 0 (the renderer knows),
    ``prompt_live`` whether a prompt is on screen (then the toolbar, not this line, is
    the place for state), ``changed`` is called when the autopx marker changes.
    """

    def __init__(
        self,
        out: TextIO,
        *,
        ansi: bool,
        at_line_start: Callable[[], bool],
        prompt_live: Callable[[], bool],
        changed: Callable[[], None],
    ) -> None:
        self.out = out
        self.ansi = ansi
        self._at_line_start = at_line_start
        self._prompt_live = prompt_live
        self._changed = changed
        #: The last progress report of the running blocking ``%px`` (None: none running).
        self.status: dict[str, Any] | None = None
        #: The suffix of the ``%autopx`` that is on (None: off).
        self.autopx: str | None = None
        self._drawn = False

    @property
    def marker(self) -> str:
        """What the prompt starts with: ``[px] `` while ``%autopx`` is on."""
        return "" if self.autopx is None else f"[px{self.autopx}] "

    def take(self, message: Message) -> Message | None:
        """``message`` as the console should render it (engine labels coloured), or None
        when it is ours to act on rather than print (progress, the autopx state)."""
        kind = message.msg_type
        if kind in ("display_data", "update_display_data"):
            data = message.content.get("data")
            status = read_status(data)
            if status is not None:
                self.status = None if status["final"] else status
                return None
            autopx = read_autopx(data)
            if autopx is not None:
                on, suffix = autopx
                self.autopx = suffix if on else None
                self._changed()
                return None
            return message
        if kind == "stream" and self.ansi:
            text = message.content.get("text")
            if isinstance(text, str):
                coloured = colour_labels(text)
                if coloured is not text:
                    content = {**message.content, "text": coloured}
                    return dataclasses.replace(message, content=content)
        return message

    def around(self, render: Callable[[], None]) -> None:
        """Run ``render`` (which writes output) with the status line out of its way."""
        self.erase()
        render()
        self.draw()

    def erase(self) -> None:
        """Take the status line off the screen (the cursor is at its start)."""
        if self._drawn:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._drawn = False

    def draw(self) -> None:
        """Show the status line on the cursor's (empty) line, cursor left at its start."""
        if self.status is None or not self.ansi or self._prompt_live():
            self.erase()
            return
        if not self._at_line_start():
            return  # an unfinished line of output: the next output completes it first
        width = shutil.get_terminal_size().columns - 1
        self.out.write(f"\r\x1b[K{_BAR_STYLE}{status_text(self.status, width)}{_RESET}\r")
        self.out.flush()
        self._drawn = True

    def end_cell(self) -> None:
        """The cell ended (a final report may never come, e.g. after Ctrl-C)."""
        self.status = None
        self.erase()
