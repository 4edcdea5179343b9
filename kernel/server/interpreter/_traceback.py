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

import inspect
import itertools
import linecache
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import CodeType, TracebackType
from typing import Any

from ._traceback_colour import highlight_python, paint

__all__ = ["MODES", "format_exception"]

MODES = ("Plain", "Context", "Verbose", "Minimal", "Docs")
"""IPython's exception reporting modes (``%xmode``); Loom shows ``Docs`` as ``Context``."""

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
#: Argument values longer than this are cut (Verbose mode).
_MAX_REPR = 200
_TRACEBACK_TITLE = "Traceback (most recent call last)"
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n"
_CONTEXT_MESSAGE = "\nDuring handling of the above exception, another exception occurred:\n"


def format_exception(
    exc: BaseException,
    *,
    cell_filenames: Mapping[str, str] | Callable[[str], str | None],
    hidden_prefixes: Sequence[str],
    color: bool = True,
    mode: str = "Context",
) -> tuple[str, str, list[str]]:
    """``(ename, evalue, traceback)`` describing ``exc`` for an ``error`` message.

    ``ename`` is the class name and ``evalue`` ``str(exc)`` (``<unprintable X object>`` when
    that raises; for a ``SyntaxError`` in a cell, the synthetic filename is replaced by the
    cell's display name). ``traceback`` shows the chain of causes and contexts oldest first,
    each frame as ``Cell In[3], line 2, in f`` (or ``File path:2``) with its source lines and
    an arrow at the failing one. ``color`` adds ANSI colours (pygments); without it the text
    has no escape sequences. A ``KeyboardInterrupt`` shows only its innermost frame; a
    ``SyntaxError`` in a cell shows no frames (how the parser was reached is not the user's).

    ``mode`` is one of :data:`MODES`, as IPython's ``%xmode``: ``Context`` as above;
    ``Verbose`` adds each function's arguments and shows frames from their first line;
    ``Plain`` is Python's own layout (``Traceback (most recent call last):``, one line of
    source a frame); ``Minimal`` only the final ``Name: message`` line of the last exception.
    Never raises ``Exception``: a failure while formatting falls back to the final line only.
    """
    namer = _make_namer(cell_filenames)
    ename = type(exc).__name__
    evalue = _evalue(exc, namer)
    try:
        lines = _Formatter(namer, tuple(hidden_prefixes), color, mode).render(exc)
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
    #: ``name=value, ...`` of the function's arguments (Verbose mode only).
    arguments: str | None = None

    @property
    def key(self) -> tuple[str, int | None, str]:
        return self.filename, self.lineno, self.name


def _arguments(code: CodeType, values: Mapping[str, object]) -> str:
    """``x=1, k=3, *a=(2,)``: a function's arguments and their values, as IPython's Verbose."""
    count = code.co_argcount + code.co_kwonlyargcount
    names = list(code.co_varnames[:count])
    stars: dict[str, str] = {}
    if code.co_flags & inspect.CO_VARARGS:
        stars[code.co_varnames[count]] = "*"
        count += 1
    if code.co_flags & inspect.CO_VARKEYWORDS:
        stars[code.co_varnames[count]] = "**"
    parts: list[str] = []
    for name in [*names, *stars]:
        shown = _safe_repr(values[name]) if name in values else "<unavailable>"
        parts.append(f"{stars.get(name, '')}{name}={shown}")
    return ", ".join(parts)


def _safe_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<unprintable {type(value).__name__} object>"
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def _position(code: CodeType, lasti: int) -> tuple[int | None, int | None, int | None, int | None]:
    if lasti < 0:
        return None, None, None, None
    positions = next(itertools.islice(code.co_positions(), lasti // 2, None), None)
    return positions if positions is not None else (None, None, None, None)


class _Formatter:
    """Renders one exception (with its chain and groups) into traceback elements."""

    def __init__(self, namer: CellNamer, hidden: tuple[str, ...], color: bool, mode: str) -> None:
        self._namer = namer
        self._hidden = hidden
        self._color = color
        self._mode = mode if mode in MODES else "Context"
        self._seen: set[int] = set()

    def render(self, exc: BaseException, depth: int = 0) -> list[str]:
        if self._mode == "Minimal":
            text = self._syntax_error(exc) if isinstance(exc, SyntaxError) else None
            return [(text or self._final_line(exc, _safe_str(exc))) + "\n"]
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
        plain = self._mode == "Plain"
        if frames and plain:
            out.append(f"{_TRACEBACK_TITLE}:\n")
            out.extend(self._render_plain_frame(f) for f in frames)
        elif frames:
            name = self._paint("*red*", type(exc).__name__)
            pad = " " * max(1, _HEADER_WIDTH - len(type(exc).__name__) - len(_TRACEBACK_TITLE))
            out.append(f"{name}{pad}{_TRACEBACK_TITLE}")
            out.extend(self._render_frames(frames))
        if isinstance(exc, SyntaxError):
            out.append(self._syntax_error(exc) + "\n" * plain)
        else:
            out.append(self._final_line(exc, _safe_str(exc)) + "\n" * plain)
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
                        _arguments(code, frame.f_locals) if self._mode == "Verbose" else None,
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
            if frame.arguments is not None:
                location += f"({frame.arguments})"
        return "\n".join([location, *self._source(frame)]) + "\n"

    def _render_plain_frame(self, frame: _Frame) -> str:
        """``  Cell In[3], line 2 in f`` and the failing line, as IPython's Plain mode."""
        location = "  " + self._location(frame.filename, frame.lineno)
        if frame.name != "<module>":
            location += f" in {frame.name}"
        line = linecache.getline(frame.filename, frame.lineno or 0, frame.module_globals)
        source = f"    {self._highlight([line.strip()])[0]}\n" if line.strip() else ""
        return f"{location}\n{source}"

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
        if self._mode == "Verbose":  # the whole function (or cell) up to the failing line
            start = max(1, min(frame.first_line, frame.lineno))
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
        return paint(style, text) if self._color else text

    def _highlight(self, lines: list[str]) -> list[str]:
        return highlight_python(lines) if self._color else lines
