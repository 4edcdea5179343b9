"""``OutputRenderer``: iopub output messages as terminal text.

It handles ``stream``, ``execute_result`` (``Out[N]:``), ``display_data``,
``update_display_data``, ``clear_output``, ``error`` and (for other clients'
cells) ``execute_input``. Which of a MIME bundle's representations is shown,
and an error's text, come from :mod:`._mime`, which ``loom run`` shares.

To redraw in place it counts the screen rows it has written: since the
current cell began (for ``clear_output``) and since the last
``display_data`` with a ``display_id`` (for ``update_display_data``). If
that display is still the last thing on the screen, an update moves the
cursor up and overwrites it, so a progress display redraws instead of
repeating; otherwise the update is printed anew. Without ANSI (plain mode)
nothing is ever overwritten. Rows are estimated from the terminal width;
after anything of unknown height (an inline image) nothing is overwritten.

Likewise it remembers our input as echoed (``begin_cell(echo=...)``) while
nothing has been written after it: another client's output that arrives then
(our cell waits behind theirs) is drawn above our input, which is erased and
drawn again below it, as background output goes above a live prompt.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import unicodedata
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable

    from kernel.protocol import JSONDict, Message

# ANSI_RE and format_bundle are re-exported: console modules import them from here.
from ._mime import ANSI_RE, error_text, format_bundle, with_newline

__all__ = ["ANSI_RE", "OutputRenderer", "format_bundle", "merge_streams"]

_SHOWN = {
    "stream", "execute_result", "display_data", "update_display_data", "error", "execute_input",
}  # fmt: skip
_RED, _GREY, _RESET = "\x1b[31m", "\x1b[90m", "\x1b[0m"


def merge_streams(messages: list[Message]) -> list[Message]:
    """``messages`` with each run of consecutive ``stream`` messages of one stream
    (``stdout`` or ``stderr``) joined into one; other messages are kept as they are."""
    runs: list[tuple[Message, list[str]]] = []
    for message in messages:
        text = message.content.get("text")
        last = runs[-1][0] if runs else None
        if (
            last is not None
            and message.msg_type == "stream" == last.msg_type
            and message.content.get("name") == last.content.get("name")
            and isinstance(text, str)
        ):
            runs[-1][1].append(text)
        else:
            runs.append((message, [text] if isinstance(text, str) else []))
    return [
        message
        if message.msg_type != "stream" or len(texts) < 2
        else dataclasses.replace(message, content={**message.content, "text": "".join(texts)})
        for message, texts in runs
    ]


class OutputRenderer:
    """Writes outputs to ``out`` (errors and stderr to ``err``).

    ``ansi`` False (plain mode) strips every escape sequence and never moves
    the cursor; ``out_prompts`` False prints results without ``Out[N]:``.
    ``images`` is an :func:`~shell.render._images.image_protocol` result.
    All methods are synchronous: callers wrap them in ``Terminal.call`` when a
    prompt may be on screen.
    """

    def __init__(
        self,
        out: TextIO,
        err: TextIO | None = None,
        *,
        ansi: bool = True,
        images: str = "file",
        out_prompts: bool = True,
    ) -> None:
        self.out = out
        self.err = err or out
        self.ansi = ansi
        self.images = images
        self.out_prompts = out_prompts
        self.column = 0  # where the cursor is on its row (0: at the start of a line)
        self._cell_rows: int | None = 0  # rows written this cell (None: unknown)
        self._last_display: tuple[str, int] | None = None  # (display_id, its rows)
        self._trailing = 0  # blank separator lines written after the last output
        self._pending_clear = False
        self._echo: _Echo | None = None  # our input, last on screen, no output after it yet

    # -- cell boundaries ------------------------------------------------------

    def begin_cell(self, echo: str | None = None) -> None:
        """A new input was echoed: earlier output can no longer be overwritten.

        ``echo`` is that input as the prompt left it on screen (``In [N]: ...``
        lines): until the cell's own output starts, another client's output
        goes above it (:meth:`render` with ``above_input``), which redraws it.
        """
        separator = self._trailing
        self._cell_rows = 0
        self._forget()
        self._pending_clear = False
        self._echo = _Echo(echo, separator) if echo and self.ansi and not self.column else None

    def ensure_newline(self) -> None:
        """End a partial line (before a prompt is drawn)."""
        if self.column:
            self._write("\n")
            self._trailing = 0

    def break_line(self) -> None:
        """Start a new line after text the terminal itself echoed (``^C``)."""
        self._write("\n")
        self.column = 0

    def separate(self, write: Callable[[str], None] | None = None) -> None:
        """A blank line before the next prompt (IPython's look).

        Output arriving while that prompt is up (background output) goes
        *above* the blank line: the separator is erased and rewritten after
        it, and does not end the last display's claim to be last on screen.
        ``write``, if given, writes the line instead of :attr:`out` (the console
        hands it to the prompt, which writes it with its first drawing).
        """
        self._write("\n", write=write)
        self._trailing += 1

    def _take_separator(self) -> int:
        """Erase the blank lines :meth:`separate` wrote; return how many there were."""
        count = self._trailing
        if not count or not self.ansi or self.column:
            return 0
        self._erase_rows(count)
        self._trailing = 0
        return count

    def _restore_separator(self, count: int) -> None:
        if count:
            self.ensure_newline()
            self._write("\n" * count)
            self._trailing = count

    # -- messages -------------------------------------------------------------

    def render(self, message: Message, *, above_input: bool = False) -> None:
        """Show one iopub message; other message types are ignored.

        ``above_input``: the message is not our cell's (another client's). If our
        input is still the last thing on screen, it goes above that input.
        """
        echo = self._echo if above_input and message.msg_type in _SHOWN else None
        if echo is not None and self._redraw_above(echo, message):
            return
        self._render(message)

    def _redraw_above(self, echo: _Echo, message: Message) -> bool:
        """Erase our input (and the blank line before it), show ``message``, draw both
        again below it; False (nothing done) if the input is too tall to erase."""
        rows = echo.separator + _rows(echo.text, shutil.get_terminal_size())
        if rows >= shutil.get_terminal_size().lines:
            return False
        self.out.write(f"\x1b[{rows}F\x1b[J")
        self._trailing = 0
        self._render(message)
        self.ensure_newline()
        self.out.write("\n" * echo.separator + echo.text)
        self.out.flush()
        self._echo = echo  # still last on screen
        self._cell_rows = 0  # and our cell has shown nothing yet
        self._last_display = None
        return True

    def _render(self, message: Message) -> None:
        content = message.content
        kind = message.msg_type
        if kind == "clear_output":
            if content.get("wait"):
                self._pending_clear = True
            else:
                self._clear()
            return
        if kind not in _SHOWN:
            return
        separator = self._take_separator()
        if self._pending_clear:
            self._pending_clear = False
            self._clear()
        self._dispatch(kind, content)
        self._restore_separator(separator)

    def _dispatch(self, kind: str, content: JSONDict) -> None:
        if kind == "stream":
            self._stream(content)
        elif kind == "execute_result":
            self._result(content)
        elif kind == "display_data":
            self._display(content, update=False)
        elif kind == "update_display_data":
            self._display(content, update=True)
        elif kind == "error":
            self._error(content)
        else:
            self._foreign_input(content)

    def _stream(self, content: JSONDict) -> None:
        text = str(content.get("text", ""))
        self._forget()
        self._write(text, err=content.get("name") == "stderr")

    def _result(self, content: JSONDict) -> None:
        text, unknown = format_bundle(content.get("data") or {}, self.images)
        prompt = ""
        if self.out_prompts:
            prompt = f"Out[{content.get('execution_count')}]: "
            if self.ansi:
                prompt = f"{_RED}{prompt}{_RESET}"
            if "\n" in text.rstrip("\n"):
                prompt += "\n"
        self._forget()
        self.ensure_newline()
        self._write(prompt + with_newline(text), unknown=unknown)

    def _display(self, content: JSONDict, *, update: bool) -> None:
        text, unknown = format_bundle(content.get("data") or {}, self.images)
        text = with_newline(text)
        transient: Any = content.get("transient") or {}
        display_id = transient.get("display_id") if isinstance(transient, dict) else None
        last = self._last_display
        if (
            update
            and self.ansi
            and last is not None
            and last[0] == display_id
            and not self.column
            and last[1] < shutil.get_terminal_size().lines
        ):
            self._erase_rows(last[1])
        self._forget()
        self.ensure_newline()
        before = self._cell_rows
        self._write(text, unknown=unknown)
        rows = self._cell_rows
        if isinstance(display_id, str) and rows is not None and before is not None:
            self._last_display = (display_id, rows - before)

    def _error(self, content: JSONDict) -> None:
        self._forget()
        self.ensure_newline()
        self._write(with_newline(error_text(content)), err=True)

    def _foreign_input(self, content: JSONDict) -> None:
        """Another client's cell: show it like an echoed input."""
        code = str(content.get("code", "")).rstrip("\n")
        head = f"[another client] In [{content.get('execution_count')}]: "
        body = code.replace("\n", "\n" + " " * (len(head) - 5) + "...: ")
        if self.ansi:
            head = f"{_GREY}{head}{_RESET}"
        self._forget()
        self.ensure_newline()
        self._write(head + body + "\n")

    def notice(self, text: str) -> None:
        """A message from the console itself, on lines of its own."""
        separator = self._take_separator()
        self._forget()
        self.ensure_newline()
        self._write(with_newline(text))
        self._restore_separator(separator)

    # -- low level ------------------------------------------------------------

    def _forget(self) -> None:
        """New output follows: the last display is no longer last on screen."""
        self._last_display = None
        self._trailing = 0

    def _write(
        self,
        text: str,
        *,
        err: bool = False,
        unknown: bool = False,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self._echo = None  # anything written now follows our input
        if not self.ansi:
            text = ANSI_RE.sub("", text)
        stream = self.err if err else self.out
        if write is not None:
            write(text)
        else:
            if stream is not self.out:
                self.out.flush()  # keep the two streams' order on a shared terminal
            stream.write(text)
            stream.flush()
        rows = self._advance(text)
        if self._cell_rows is not None:
            self._cell_rows = None if unknown else self._cell_rows + rows

    def _advance(self, text: str) -> int:
        """Move :attr:`column` over ``text``; return the screen rows it completed.

        An estimate: a carriage return restarts the row, wide characters count
        two cells, and a line longer than the terminal wraps. Text with more
        lines than the terminal has rows only needs a lower bound (nothing that
        tall is ever redrawn in place), so a flood is not measured line by line.
        """
        if not self.ansi:  # no cursor movement in plain mode: only line ends matter
            _, newline, tail = text.rpartition("\n")
            self.column = len(tail) if newline else self.column + len(tail)
            return text.count("\n")
        size = shutil.get_terminal_size()
        width = max(size.columns, 1)
        newlines = text.count("\n")
        if newlines >= size.lines:
            tail = ANSI_RE.sub("", text.rpartition("\n")[2])
            self.column = 0
            return newlines + self._advance_segment(tail, width, ended=False)
        rows = 0
        segments = ANSI_RE.sub("", text).split("\n")
        for index, segment in enumerate(segments):
            rows += self._advance_segment(segment, width, ended=index < len(segments) - 1)
        return rows

    def _advance_segment(self, segment: str, width: int, *, ended: bool) -> int:
        """Move :attr:`column` over one line's text (no escapes); ``ended``: a newline follows."""
        if "\r" in segment:
            self.column = 0
            segment = segment.rsplit("\r", 1)[1]
        col = self.column + _cells(segment)
        if ended:
            self.column = 0
            return 1 + max(col - 1, 0) // width
        self.column = col % width
        return col // width

    def _erase_rows(self, rows: int) -> None:
        """Move up ``rows`` rows to column 0 and erase to the end of the screen."""
        if rows <= 0:
            return
        self.out.write(f"\x1b[{rows}F\x1b[J")
        self.out.flush()
        if self._cell_rows is not None:
            self._cell_rows = max(self._cell_rows - rows, 0)

    def _clear(self) -> None:
        """``clear_output``: erase what this cell has shown, when we know its height."""
        self._forget()
        if not self.ansi or self._cell_rows is None:
            return
        height = shutil.get_terminal_size().lines
        if self.column:
            self.out.write("\r\x1b[K")
            self.column = 0
        if 0 < self._cell_rows < height:
            self._erase_rows(self._cell_rows)
        self._cell_rows = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _Echo:
    """Our input as on screen, and the blank lines :meth:`OutputRenderer.separate` put
    before it."""

    text: str
    separator: int


def _rows(text: str, size: os.terminal_size) -> int:
    """Screen rows ``text`` (whole lines, escapes allowed) takes at ``size``."""
    width = max(size.columns, 1)
    lines = ANSI_RE.sub("", text).removesuffix("\n").split("\n")
    return sum(1 + max(_cells(line) - 1, 0) // width for line in lines)


def _cells(text: str) -> int:
    """Terminal cells ``text`` takes (East Asian wide characters take two)."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
