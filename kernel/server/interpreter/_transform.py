"""IPython syntax to plain Python, one line for one line.

:func:`transform_cell` rewrites the IPython extensions to Python's grammar into calls of helper
functions that :class:`~kernel.server.magics._registry.Magics` puts in the user namespace:

=========================  ==============================================
``%name args``             ``_loom_magic_('name', 'args')``
``x = %name args``         ``x = _loom_magic_('name', 'args')``
``%%name args`` + body     ``_loom_cell_magic_('name', 'args', 'body')``
``!cmd``                   ``_loom_system_('cmd')``
``!!cmd`` / ``x = !cmd``   ``_loom_getoutput_('cmd')`` / ``x = _loom_getoutput_('cmd')``
``%name args`` (async)     ``(await _loom_magic_('name', 'args'))``
``obj?`` / ``?obj``        ``_loom_help_('obj', 0)``
``obj??`` / ``??obj``      ``_loom_help_('obj', 1)``
``%name?`` / ``%%name?``   ``_loom_help_('%name', 0)`` / ``_loom_help_('%%name', 0)``
=========================  ==============================================

Theory of operation
-------------------
The output always has exactly as many newlines as the input, so line ``n`` of the output comes
from line ``n`` of the input and tracebacks point at what the user typed. A special line joined
to the next ones by trailing backslashes becomes one call followed by blank lines.

Special syntax is only recognised at the start of a *logical* line: a physical line that is not
inside a string, a bracket, or after a backslash continuation. A small lexer (:class:`_Lexer`)
follows strings (all prefixes, triple quotes, f-string replacement fields), brackets, comments
and continuations across lines; it never needs to tokenize the special lines themselves, which
are not Python. Everywhere else the text is left alone, so ``a % b``, ``x %= 3``, ``a != b``,
``'?'`` and ``# %comment`` are untouched and a cell of plain Python comes back identical.

Magics registered as async (``Magics.register_line(..., is_async=True)``) are named in
``async_magics`` (``"%name"``, ``"%%name"``); their calls are awaited, which makes the cell a
top-level-await cell that the interpreter runs as a task on the kernel's loop.

``{expr}`` and ``$name`` in shell commands and magic arguments are *not* expanded here: the
helpers expand them at run time in the caller's namespace.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["transform_cell"]

#: ``obj?``, ``obj.attr??``, ``obj[0]?``, ``%magic?``, ``np.*?`` as a whole logical line.
_HELP_END = re.compile(r"(?P<target>%{0,2}(?!\d)[\w*]+(?:\.(?!\d)[\w*]+|\[-?\d+\])*)(?P<esc>\?\??)")
#: An ``=`` followed by ``!cmd`` or ``%magic``: a candidate special assignment.
_ASSIGN = re.compile(r"=\s*(?P<rhs>!(?!=)|%(?=[^\W\d]))")
#: Characters that make the ``=`` before them part of another operator (``==``, ``+=``, ...).
_OPERATOR_CHARS = frozenset("=<>!:+-*/%&|^@~")
_STRING_PREFIXES = frozenset({"", "r", "u", "b", "f", "br", "rb", "fr", "rf"})
_OPENERS = {"(": ")", "[": "]", "{": "}"}


def transform_cell(code: str, *, async_magics: Collection[str] = ()) -> str:
    """Return ``code`` with IPython syntax rewritten as Python calls of the ``_loom_*_`` helpers.

    Calls of the magics named in ``async_magics`` (``"%name"``, ``"%%name"``) are awaited.

    The result has the same number of newlines as ``code``; text that contains no IPython
    syntax is returned unchanged. Never raises: text this function does not understand is left
    for the compiler to report.
    """
    if "%" not in code and "!" not in code and "?" not in code:
        return code  # every special form needs one of these
    lines = code.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and _is_cell_magic_line(lines[first]):
        return _transform_cell_magic(lines, first, async_magics)
    return "\n".join(_transform_lines(lines, async_magics))


def _is_cell_magic_line(line: str) -> bool:
    return line.startswith("%%") and _HELP_END.fullmatch(line.rstrip()) is None


def _transform_cell_magic(lines: list[str], first: int, async_magics: Collection[str]) -> str:
    """The whole cell as one ``_loom_cell_magic_`` call on the ``%%`` line."""
    name, _, args = lines[first][2:].rstrip().partition(" ")
    body = "\n".join(lines[first + 1 :])
    if body and not body.endswith("\n"):
        body += "\n"  # as IPython, which ends every cell with a newline: %%writefile files do
    call = f"_loom_cell_magic_({name!r}, {args!r}, {body!r})"
    if f"%%{name}" in async_magics:
        call = f"await {call}"
    return "\n" * first + call + "\n" * (len(lines) - 1 - first)


def _transform_lines(lines: list[str], async_magics: Collection[str]) -> list[str]:
    out: list[str] = []
    lexer = _Lexer()
    i = 0
    while i < len(lines):
        line = lines[i]
        if lexer.at_statement_start and _may_be_special(line):
            end = _end_of_continuation(lines, i)
            replacement = _transform_statement(_join_continued(lines[i : end + 1]), async_magics)
            if replacement is not None:
                out.append(replacement + _eol(line))
                out.extend(_eol(extra) for extra in lines[i + 1 : end + 1])
                i = end + 1
                continue
        lexer.feed(line)
        out.append(line)
        i += 1
    return out


def _may_be_special(line: str) -> bool:
    """A cheap filter: could this physical line start IPython syntax?"""
    stripped = line.strip()
    return stripped[:1] in ("%", "!", "?") or stripped.endswith("?") or "=" in stripped


def _eol(line: str) -> str:
    """What a replaced line keeps of ``line``: its carriage return, for CRLF text."""
    return "\r" if line.endswith("\r") else ""


def _end_of_continuation(lines: list[str], start: int) -> int:
    """Index of the last physical line joined to ``lines[start]`` by trailing backslashes."""
    end = start
    while end + 1 < len(lines) and lines[end].rstrip("\r").endswith("\\"):
        end += 1
    return end


def _join_continued(parts: list[str]) -> str:
    pieces = [part.rstrip("\r") for part in parts]
    return " ".join([piece[:-1] for piece in pieces[:-1]] + [pieces[-1]])


def _transform_statement(line: str, async_magics: Collection[str] = ()) -> str | None:
    """The Python replacing one logical line, or ``None`` if it holds no IPython syntax."""
    content = line.strip()
    indent = line[: len(line) - len(line.lstrip())]
    if not content:
        return None
    help_end = _HELP_END.fullmatch(content)
    if help_end is not None:
        level = len(help_end["esc"]) - 1
        return f"{indent}_loom_help_({help_end['target']!r}, {level})"
    if content.startswith("??"):
        return f"{indent}_loom_help_({content[2:].strip()!r}, 1)"
    if content.startswith("?"):
        return f"{indent}_loom_help_({content[1:].strip()!r}, 0)"
    if content.startswith("!!"):
        return f"{indent}_loom_getoutput_({content[2:]!r})"
    if content.startswith("!"):
        return f"{indent}_loom_system_({content[1:]!r})"
    if content.startswith("%"):
        return indent + _magic_call(content[1:], async_magics)
    assignment = _split_special_assignment(content)
    if assignment is None:
        return None
    lhs, rhs = assignment
    if rhs.startswith("!"):
        return f"{indent}{lhs}_loom_getoutput_({rhs[1:]!r})"
    return indent + lhs + _magic_call(rhs[1:], async_magics)


def _magic_call(content: str, async_magics: Collection[str]) -> str:
    """``_loom_magic_`` call for ``content``, the text after ``%``; awaited if async.

    ``%%name`` on a later line than the first keeps its second ``%`` in the name, so the
    registry can say that cell magics belong on the first line.
    """
    name, _, args = content.partition(" ")
    call = f"_loom_magic_({name!r}, {args!r})"
    return f"(await {call})" if f"%{name}" in async_magics else call


def _split_special_assignment(content: str) -> tuple[str, str] | None:
    """Split ``x = !cmd`` / ``x = %magic args`` into ``("x = ", "!cmd")``, else ``None``."""
    for match in _ASSIGN.finditer(content):
        eq = match.start()
        if eq == 0 or content[eq - 1] in _OPERATOR_CHARS:
            continue
        if _is_assignment_target(content[:eq]):
            return content[: match.start("rhs")], content[match.start("rhs") :]
    return None


def _is_assignment_target(lhs: str) -> bool:
    """True if ``lhs = None`` is a single assignment whose value is that ``None``.

    Checking the value's position rejects an ``=`` that sits inside a comment or a string.
    """
    source = f"{lhs.strip()} = None"
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    if len(tree.body) != 1:
        return False
    statement = tree.body[0]
    if not isinstance(statement, ast.Assign | ast.AnnAssign):
        return False
    value = statement.value
    return (
        isinstance(value, ast.Constant)
        and value.value is None
        and value.col_offset == len(source) - len("None")
    )


# -- lexing across lines ------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class _String:
    """An open string literal: its closing quote, and whether it is raw or an f-string."""

    quote: str
    fstring: bool


#: Marks an open f-string replacement field (``{`` ... ``}``) on the lexer's stack.
_FIELD = "f{"


class _Lexer:
    """Follows where physical lines start: inside a string, a bracket, a continuation, or not.

    The stack holds open brackets (``"("``, ``"["``, ``"{"``), open strings and open f-string
    replacement fields, innermost last. Raw strings need no flag: a backslash keeps the next
    character inside the literal for raw and ordinary strings alike.
    """

    def __init__(self) -> None:
        self._stack: list[str | _String] = []
        self._continued = False

    @property
    def at_statement_start(self) -> bool:
        """True if the next physical line starts a new logical line."""
        return not self._stack and not self._continued

    def feed(self, line: str) -> None:
        """Advance over one physical line (without its ``\\n``)."""
        self._continued = False
        line = line.removesuffix("\r")
        i, n = 0, len(line)
        while i < n:
            top = self._stack[-1] if self._stack else None
            if isinstance(top, _String):
                i = self._in_string(line, i, top)
                continue
            char = line[i]
            if char == "#":
                break
            if char in "'\"":
                i = self._open_string(line, i)
                continue
            if char in _OPENERS:
                self._stack.append(char)
            elif char in ")]}":
                if top is not None and (
                    (top == _FIELD and char == "}") or _OPENERS.get(top) == char
                ):
                    self._stack.pop()
            elif char == "\\" and line[i + 1 :].strip() == "":
                self._continued = True
                break
            i += 1
        # A one-quote string cannot span lines unless its newline is escaped; recover from an
        # unterminated one so one typo does not swallow the rest of the cell.
        innermost = self._stack[-1] if self._stack else None
        if (
            isinstance(innermost, _String)
            and len(innermost.quote) == 1
            and not _ends_with_escape(line)
        ):
            self._stack.pop()

    def _open_string(self, line: str, i: int) -> int:
        start = i
        while start > 0 and line[start - 1].isalpha():
            start -= 1
        prefix = line[start:i].lower()
        fstring = "f" in prefix and prefix in _STRING_PREFIXES
        quote = line[i] * 3 if line.startswith(line[i] * 3, i) else line[i]
        self._stack.append(_String(quote, fstring))
        return i + len(quote)

    def _in_string(self, line: str, i: int, string: _String) -> int:
        char = line[i]
        if char == "\\":
            return i + 2
        if line.startswith(string.quote, i):
            self._stack.pop()
            return i + len(string.quote)
        if string.fstring and char in "{}":
            if line.startswith(char * 2, i):
                return i + 2
            if char == "{":
                self._stack.append(_FIELD)
        return i + 1


def _ends_with_escape(line: str) -> bool:
    """True if ``line`` ends with an odd number of backslashes (an escaped newline)."""
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1
