"""``is_complete_request`` (messaging spec, "Code completeness"): run the cell or keep typing?

The rules follow IPython's ``TransformerManager.check_complete``, built on ``tokenize`` and
``codeop`` alone:

- blank code is ``complete``;
- a backslash continuation, an open bracket or an open triple-quoted string at the end is
  ``incomplete``, indented like the last non-blank line;
- a statement ending in ``:`` opens a block: ``incomplete``, indented 4 columns more than
  that statement;
- code inside an indented block stays ``incomplete`` (same indent) until the cell ends with an
  empty line (the text after the last ``\\n`` is blank);
- code no further input can fix (``x = )``, ``return`` at top level, mismatched brackets)
  is ``invalid``; top-level ``await`` is allowed;
- IPython syntax (``%magic``, ``!cmd``, ``x = %magic``, ``obj?``, ``??obj``) is accepted on
  lines that start a statement; a ``%%cell`` magic is ``incomplete`` until it has a body and
  an empty trailing line.
"""

from __future__ import annotations

import ast
import codeop
import io
import re
import tokenize
import warnings
from dataclasses import dataclass
from typing import Any

__all__ = ["is_complete"]

_INDENT_STEP = 4
_IPYTHON_LINE_RE = re.compile(r"\s*(?:%|!|\?{1,2}[\w.*]+\s*$|[\w.*]+\?{1,2}\s*$)")
_IPYTHON_ASSIGN_RE = re.compile(r"(\s*[\w.,\s*\[\]]+?\s*=)\s*[%!]")
_CLOSE = {")": "(", "]": "[", "}": "{"}
_NON_CODE = frozenset(
    {tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT}
)


@dataclass(frozen=True, slots=True)
class _Scan:
    """What tokenizing the whole cell found."""

    open: bool  # EOF inside brackets, a triple-quoted string or after a backslash
    ends_with_colon: bool  # the last code token is ":" (outside brackets)
    statement_indent: int  # columns of the first token of the last logical line
    depth: int  # indentation level of the last logical line


class _Invalid(Exception):
    """The cell is invalid whatever follows it."""


def is_complete(code: str) -> dict[str, Any]:
    """The content of an ``is_complete_reply`` for ``code``.

    Returns ``{"status": "complete"}``, ``{"status": "invalid"}``, or
    ``{"status": "incomplete", "indent": "<spaces>"}`` (see the module docstring for the
    rules). Never raises: an unexpected failure gives ``{"status": "unknown"}``.
    """
    try:
        status, indent = _check(code.replace("\r\n", "\n").replace("\r", "\n"))
    except Exception:
        return {"status": "unknown"}
    if status == "incomplete":
        return {"status": status, "indent": " " * indent}
    return {"status": status}


def _check(code: str) -> tuple[str, int]:
    if not code.strip():
        return "complete", 0
    lines = code.split("\n")
    terminated = len(lines) > 1 and not lines[-1].strip()
    last = next(line for line in reversed(lines) if line.strip())
    if lines[0].startswith("%%"):
        done = terminated and len(lines) > 2 and not last.endswith("\\")  # body + empty line
        return ("complete", 0) if done else ("incomplete", _indent(last))
    try:
        source = _as_python(lines)
        if source is None:
            return "incomplete", _indent(last)
        scan = _scan(source)
    except (_Invalid, SyntaxError):
        return "invalid", 0
    if scan.open:
        return "incomplete", _indent(last)
    compiled = _compile(source)
    if compiled is False:
        return "invalid", 0
    if scan.ends_with_colon:
        return "incomplete", scan.statement_indent + _INDENT_STEP
    if compiled is None:
        return "incomplete", _indent(last)  # e.g. a decorator, or ``try:`` without ``except``
    if scan.depth > 0 and not terminated:
        return "incomplete", _indent(last)
    return "complete", 0


def _indent(line: str) -> int:
    expanded = line.expandtabs(_INDENT_STEP)
    return len(expanded) - len(expanded.lstrip())


def _as_python(lines: list[str]) -> str | None:
    """The cell with each IPython-syntax statement replaced by equivalent plain Python.

    A statement line is one not inside brackets or a string opened by the lines before it.
    A ``%magic`` / ``!cmd`` continued with ``\\`` swallows its continuation lines; None
    means the cell ends in such a continuation.
    """
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        assign = _IPYTHON_ASSIGN_RE.match(line)
        if (assign or _IPYTHON_LINE_RE.match(line)) and not _scan("\n".join(out)).open:
            while lines[index].endswith("\\"):
                index += 1
                if index == len(lines):
                    return None
            line = f"{assign.group(1)} None" if assign else line[: _indent(line)] + "pass"
        out.append(line)
        index += 1
    return "\n".join(out)


def _scan(source: str) -> _Scan:
    """Tokenize ``source``; raises :class:`_Invalid` on brackets no input can balance."""
    brackets: list[str] = []
    depth = statement_depth = statement_indent = 0
    at_statement_start = True
    last_code: tokenize.TokenInfo | None = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.INDENT:
                depth += 1
            elif token.type == tokenize.DEDENT:
                depth -= 1
            elif token.type == tokenize.NEWLINE:
                at_statement_start = True
            elif token.type not in _NON_CODE and token.type != tokenize.ENDMARKER:
                if at_statement_start:
                    at_statement_start = False
                    statement_depth = depth
                    statement_indent = _indent(token.line)
                last_code = token
                _track_bracket(brackets, token)
    except tokenize.TokenError as error:
        if "EOF" in str(error.args[0]):
            return _Scan(True, False, statement_indent, statement_depth)
        raise _Invalid from error
    ends_with_colon = last_code is not None and last_code.string == ":"
    return _Scan(False, ends_with_colon, statement_indent, statement_depth)


def _track_bracket(brackets: list[str], token: tokenize.TokenInfo) -> None:
    if token.type != tokenize.OP:
        return
    if token.string in "([{":
        brackets.append(token.string)
    elif token.string in _CLOSE and (not brackets or brackets.pop() != _CLOSE[token.string]):
        raise _Invalid(f"unmatched {token.string!r}")


def _compile(source: str) -> bool | None:
    """True if ``source`` compiles, None if it is a prefix of valid code, False if not."""
    compiler = codeop.CommandCompiler()
    compiler.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning/DeprecationWarning say nothing here
            code = compiler(source, "<cell>", "exec")
    except (SyntaxError, OverflowError, ValueError, TypeError, MemoryError):
        return False
    return None if code is None else True
