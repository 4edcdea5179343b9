"""Tracebacks for users: the ``ename``, ``evalue`` and ``traceback`` of an ``error`` message.

Messaging spec, "Execution errors": ``traceback`` is a list of strings, which front ends join
with newlines. As IPython does, each element is one block (a header, a frame with its source,
a chained-exception separator, the final ``Name: message`` line) and may hold newlines.

Frames of the kernel itself (files under ``hidden_prefixes``, or frames that set a true
``__tracebackhide__`` local, as in IPython) are left out, so users see only their own code.
Cells are compiled under synthetic filenames whose source lives in :mod:`linecache`;
``cell_filenames`` turns such a filename into a display name like ``Cell In[3]``.
"""

from __future__ import annotations

import functools
import itertools
import linecache
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import CodeType, TracebackType
from typing import Any

__all__ = ["format_exception"]

CellNamer = Callable[[str], str | None]

#: Lines of context shown above the failing line, and most continuation lines below it.
_CONTEXT = 2
_MAX_CONTINUATION = 4
#: Identical consecutive frames shown before the rest are summarised (as Python does).
_RECURSIVE_CUTOFF = 3
#: Limits for exception groups, as in the standard ``traceback`` module.
_MAX_GROUP_WIDTH = 15
_MAX_GROUP_DEPTH = 10
_HEADER_WIDTH = 75
_TRACEBACK_TITLE = "Traceback (most recent call last)"
_EMPTY_COLOUR = re.compile(r"\x1b\[[0-9;]*m\x1b\[39;49;00m")
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n"
_CONTEXT_MESSAGE = "\nDuring handling of the above exception, another exception occurred:\n"


def format_exception(
    exc: BaseException,
    *,
    cell_filenames: Mapping[str, str] | Callable[[str], str | None],
    hidden_prefixes: Sequence[str],
    color: bool = True,
) -> tuple[str, str, list[str]]:
    """``(ename, evalue, traceback)`` describing ``exc`` for an ``error`` message.

    ``ename`` is the class name and ``evalue`` ``str(exc)`` (``<unprintable X object>`` when
    that raises; for a ``SyntaxError`` in a cell, the synthetic filename is replaced by the
    cell's display name). ``traceback`` shows the chain of causes and contexts oldest first,
    each frame as ``Cell In[3], line 2, in f`` (or ``File path:2``) with its source lines and
    an arrow at the failing one. ``color`` adds ANSI colours (pygments); without it the text
    has no escape sequences. A ``KeyboardInterrupt`` shows only its innermost frame; a
    ``SyntaxError`` in a cell shows no frames (how the parser was reached is not the user's).
    Never raises ``Exception``: a failure while formatting falls back to the final line only.
    """
    namer = _make_namer(cell_filenames)
    ename = type(exc).__name__
    evalue = _evalue(exc, namer)
    try:
        lines = _Formatter(namer, tuple(hidden_prefixes), color).render(exc)
    except Exception:
        lines = [f"{ename}: {evalue}" if evalue else ename]
    return ename, evalue, lines


def _make_namer(cell_filenames: Mapping[str, str] | Callable[[str], str | None]) -> CellNamer:
    lookup = cell_filenames.get if isinstance(cell_filenames, Mapping) else cell_filenames

    def namer(filename: str) -> str | None:
        try:
            name = lookup(filename)
        except Exception:
            return None
        return name if isinstance(name, str) else None

    return namer


def _safe_str(obj: object) -> str:
    try:
        return str(obj)
    except Exception:
        return f"<unprintable {type(obj).__name__} object>"


def _evalue(exc: BaseException, namer: CellNamer) -> str:
    if isinstance(exc, SyntaxError) and isinstance(exc.filename, str):
        cell = namer(exc.filename)
        if cell is not None:
            where = cell if exc.lineno is None else f"{cell}, line {exc.lineno}"
            return f"{_safe_str(exc.msg)} ({where})"
    return _safe_str(exc)


@dataclass(frozen=True, slots=True)
class _Frame:
    """One visible traceback entry, with the source position of the failing instruction."""

    filename: str
    lineno: int | None
    end_lineno: int | None
    colno: int | None
    end_colno: int | None
    name: str
    first_line: int
    module_globals: dict[str, Any]

    @property
    def key(self) -> tuple[str, int | None, str]:
        return self.filename, self.lineno, self.name


def _position(code: CodeType, lasti: int) -> tuple[int | None, int | None, int | None, int | None]:
    if lasti < 0:
        return None, None, None, None
    positions = next(itertools.islice(code.co_positions(), lasti // 2, None), None)
    return positions if positions is not None else (None, None, None, None)


class _Formatter:
    """Renders one exception (with its chain and groups) into traceback elements."""

    def __init__(self, namer: CellNamer, hidden: tuple[str, ...], color: bool) -> None:
        self._namer = namer
        self._hidden = hidden
        self._color = color
        self._seen: set[int] = set()

    def render(self, exc: BaseException, depth: int = 0) -> list[str]:
        chain: list[tuple[BaseException, str | None]] = []  # newest first
        current: BaseException | None = exc
        separator: str | None = None
        while current is not None and id(current) not in self._seen:
            self._seen.add(id(current))
            chain.append((current, separator))
            if current.__cause__ is not None:
                current, separator = current.__cause__, _CAUSE
            elif current.__context__ is not None and not current.__suppress_context__:
                current, separator = current.__context__, _CONTEXT_MESSAGE
            else:
                current = None
        out: list[str] = []
        for item, after in reversed(chain):
            out.extend(self._render_one(item, depth))
            if after is not None:
                out.append(after)
        return out

    def _render_one(self, exc: BaseException, depth: int) -> list[str]:
        frames = self._visible_frames(exc.__traceback__)
        if isinstance(exc, KeyboardInterrupt):
            frames = frames[-1:]
        elif isinstance(exc, SyntaxError) and self._is_cell(exc.filename):
            frames = []  # a cell that does not parse: the path into the parser is noise
        out: list[str] = []
        if frames:
            name = self._paint("*red*", type(exc).__name__)
            pad = " " * max(1, _HEADER_WIDTH - len(type(exc).__name__) - len(_TRACEBACK_TITLE))
            out.append(f"{name}{pad}{_TRACEBACK_TITLE}")
            out.extend(self._render_frames(frames))
        if isinstance(exc, SyntaxError):
            out.append(self._syntax_error(exc))
        else:
            out.append(self._final_line(exc, _safe_str(exc)))
        if isinstance(exc, BaseExceptionGroup):
            out.extend(self._render_group(exc, depth))
        return out

    # -- frames -----------------------------------------------------------------------------

    def _visible_frames(self, tb: TracebackType | None) -> list[_Frame]:
        frames: list[_Frame] = []
        while tb is not None:
            frame, code = tb.tb_frame, tb.tb_frame.f_code
            if not self._is_hidden(code.co_filename, frame.f_locals):
                lineno, end_lineno, colno, end_colno = _position(code, tb.tb_lasti)
                if lineno != tb.tb_lineno:
                    end_lineno = colno = end_colno = None
                frames.append(
                    _Frame(
                        code.co_filename,
                        tb.tb_lineno,
                        end_lineno,
                        colno,
                        end_colno,
                        code.co_qualname,
                        code.co_firstlineno,
                        frame.f_globals,
                    )
                )
            tb = tb.tb_next
        return frames

    def _is_hidden(self, filename: str, frame_locals: Mapping[str, object]) -> bool:
        if filename.startswith(self._hidden):
            return True
        try:
            return bool(frame_locals.get("__tracebackhide__", False))
        except Exception:
            return False

    def _render_frames(self, frames: list[_Frame]) -> list[str]:
        out: list[str] = []
        for _key, group in itertools.groupby(frames, key=lambda f: f.key):
            repeated = list(group)
            out.extend(self._render_frame(f) for f in repeated[:_RECURSIVE_CUTOFF])
            if len(repeated) > _RECURSIVE_CUTOFF:
                more = len(repeated) - _RECURSIVE_CUTOFF
                out.append(f"[Previous frame repeated {more} more time{'s' * (more > 1)}]\n")
        return out

    def _render_frame(self, frame: _Frame) -> str:
        location = self._location(frame.filename, frame.lineno)
        if frame.name != "<module>":
            location += f", in {self._paint('cyan', frame.name)}"
        return "\n".join([location, *self._source(frame)]) + "\n"

    def _is_cell(self, filename: object) -> bool:
        return isinstance(filename, str) and self._namer(filename) is not None

    def _location(self, filename: str, lineno: int | None) -> str:
        cell = self._namer(filename)
        if cell is not None:
            where = self._paint("green", cell)
            return where if lineno is None else f"{where}, line {self._paint('green', str(lineno))}"
        where = self._paint("green", f"File {filename}")
        return where if lineno is None else f"{where}:{self._paint('green', str(lineno))}"

    def _source(self, frame: _Frame) -> list[str]:
        """Numbered source around the failing line, an arrow on it, carets under its span."""
        if frame.lineno is None:
            return []
        lines = linecache.getlines(frame.filename, frame.module_globals)
        if not 0 < frame.lineno <= len(lines):
            return []
        start = max(1, min(frame.first_line, frame.lineno), frame.lineno - _CONTEXT)
        last = max(frame.lineno, min(frame.end_lineno or 0, frame.lineno + _MAX_CONTINUATION))
        last = min(last, len(lines))
        plain = [line.rstrip("\r\n") for line in lines[start - 1 : last]]
        shown = self._highlight(plain)
        out: list[str] = []
        for number, text in enumerate(shown, start):
            out.append(f"{self._gutter(number, number == frame.lineno)} {text}".rstrip())
            if number == frame.lineno:
                out.extend(self._carets(frame, plain[number - start]))
        return out

    def _gutter(self, number: int, marked: bool) -> str:
        digits = str(number)
        if marked:
            return self._paint("*green*", "-" * max(0, 5 - len(digits)) + "> " + digits)
        return self._paint("green", digits.rjust(7))

    def _carets(self, frame: _Frame, line: str) -> list[str]:
        if frame.colno is None or frame.end_colno is None or frame.end_lineno != frame.lineno:
            return []
        # Code positions count UTF-8 bytes; the display needs characters.
        encoded = line.encode("utf-8")
        start = len(encoded[: frame.colno].decode("utf-8", "replace"))
        end = len(encoded[: frame.end_colno].decode("utf-8", "replace"))
        if end <= start or (line[:start].strip() == "" and line[end:].strip() == ""):
            return []  # the whole line failed: carets would add nothing
        return [" " * (8 + start) + self._paint("*red*", "^" * (end - start))]

    # -- final lines ------------------------------------------------------------------------

    def _final_line(self, exc: BaseException, message: str) -> str:
        name = self._paint("*red*", type(exc).__name__)
        text = f"{name}: {message}" if message else name
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, Sequence) and not isinstance(notes, str | bytes):
            text += "".join("\n" + _safe_str(note) for note in notes)
        elif notes is not None:
            text += "\n" + _safe_str(notes)
        return text

    def _syntax_error(self, exc: SyntaxError) -> str:
        """Where the parser stopped, the line with carets at the offset, then the message."""
        out: list[str] = []
        filename = exc.filename if isinstance(exc.filename, str) else None
        lineno = exc.lineno if isinstance(exc.lineno, int) else None
        if filename is not None:
            out.append("  " + self._location(filename, lineno))
        text = exc.text
        if text is None and filename is not None and lineno is not None:
            text = linecache.getline(filename, lineno) or None
        if text:
            line = text.split("\n", 1)[0].rstrip()
            stripped = line.lstrip()
            out.append("    " + self._highlight([stripped])[0])
            if isinstance(exc.offset, int) and exc.offset > 0:
                indent = len(line) - len(stripped)
                start = max(0, min(exc.offset - 1 - indent, len(stripped)))
                end = start + 1
                same_line = exc.end_lineno in (None, lineno)
                if isinstance(exc.end_offset, int) and same_line and exc.end_offset > exc.offset:
                    end = max(end, min(exc.end_offset - 1 - indent, len(stripped)))
                out.append("    " + " " * start + self._paint("*red*", "^" * (end - start)))
        out.append(self._final_line(exc, _safe_str(exc.msg if exc.msg is not None else exc)))
        return "\n".join(out)

    def _render_group(self, group: BaseExceptionGroup[BaseException], depth: int) -> list[str]:
        if depth >= _MAX_GROUP_DEPTH:
            return ["  +-- ... (max exception group depth reached)"]
        out: list[str] = []
        subs = group.exceptions
        for index, sub in enumerate(subs[:_MAX_GROUP_WIDTH], 1):
            body = "\n".join(self.render(sub, depth + 1))
            indented = "\n".join("  | " + line for line in body.split("\n"))
            out.append(f"  +---------------- {index} ----------------\n{indented}")
        if len(subs) > _MAX_GROUP_WIDTH:
            out.append(f"  +-- and {len(subs) - _MAX_GROUP_WIDTH} more exceptions")
        return out

    # -- colour -----------------------------------------------------------------------------

    def _paint(self, style: str, text: str) -> str:
        if not self._color:
            return text
        try:
            return str(_pygments_console().ansiformat(style, text))
        except Exception:
            return text

    def _highlight(self, lines: list[str]) -> list[str]:
        """``lines`` of Python highlighted together (so multi-line tokens lex right)."""
        if not self._color or not lines:
            return lines
        try:
            lexer, formatter, highlight = _pygments_highlighter()
            coloured = str(highlight("\n".join(lines), lexer, formatter))
        except Exception:
            return lines
        # TerminalFormatter wraps bare whitespace in an empty colour pair: pure noise.
        result = _EMPTY_COLOUR.sub("", coloured).split("\n")
        if result and result[-1] == "" and len(result) == len(lines) + 1:
            result.pop()
        return result if len(result) == len(lines) else lines


# Pygments is imported on first coloured traceback only: kernel start-up stays fast.
@functools.cache
def _pygments_console() -> Any:
    import pygments.console  # type: ignore[import-untyped, unused-ignore]

    return pygments.console


@functools.cache
def _pygments_highlighter() -> tuple[Any, Any, Any]:
    from pygments import highlight  # type: ignore[import-untyped, unused-ignore]
    from pygments.formatters import (  # type: ignore[import-untyped, unused-ignore]
        TerminalFormatter,
    )
    from pygments.lexers import PythonLexer  # type: ignore[import-untyped, unused-ignore]

    return PythonLexer(stripnl=False, ensurenl=False), TerminalFormatter(bg="dark"), highlight
