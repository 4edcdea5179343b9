"""Is this input a whole cell? Ask the kernel, with a local fallback.

The kernel is the authority (``is_complete_request``: it knows its magics
and its language), but Enter must never wait long for it. If the kernel is
not usable (busy with another client's cell, dead, silent, still starting)
or takes longer than ``timeout``, :func:`guess_complete` decides for this
one keypress; the next keypress asks the kernel again, so a slow moment does
not degrade the console for good.

One case needs no question at all: a single line that Python compiles as it
stands (:func:`is_complete_line`). No kernel could call it incomplete, as
IPython's own terminal decides such lines locally too, so a Python kernel is
not asked and Enter runs it at once. So is a single-line line magic
(:func:`is_line_magic`: ``%px a=1``, not ``%%px``, no trailing backslash):
IPython's ``check_complete`` and Loom's kernel both call every such line
complete, whatever follows the magic's name, and the round trip was a quarter
of the time from Enter to the next prompt for ``%px a=1``. Everything else
(several lines, anything else that does not compile, such as ``!cmd``,
``obj?``, an open bracket or block) still goes to the kernel.
"""

from __future__ import annotations

import ast
import asyncio
import codeop
import re
import warnings

from kernel import KernelError

from ._link import KernelLink

__all__ = ["check_complete", "guess_complete", "is_complete_line", "is_line_magic"]

#: Seconds Enter waits for the kernel's answer before guessing locally.
IS_COMPLETE_TIMEOUT = 0.3
_DEDENT = re.compile(r"^\s*(return|pass|break|continue|raise)\b")
_PARSE_ONLY = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


async def check_complete(
    link: KernelLink | None, text: str, timeout: float = IS_COMPLETE_TIMEOUT
) -> tuple[str, str]:
    """``(status, indent)`` for ``text``; status is ``complete``, ``incomplete``,
    ``invalid`` or ``unknown``; indent is the next line's indentation."""
    if link is not None and link.is_usable and link.state != "busy":
        try:
            async with asyncio.timeout(timeout):
                reply = await link.client.is_complete(text)
        except (TimeoutError, KernelError):
            pass
        else:
            status = str(reply.get("status", "unknown"))
            if status != "unknown":
                return status, str(reply.get("indent", ""))
    return guess_complete(text)


def is_complete_line(text: str) -> bool:
    """True when ``text`` is one line of Python source that is complete as it stands.

    That is: no line break, not indented, and it parses (top-level ``await``
    allowed), so it cannot end inside a bracket, a string, a block header or a
    backslash continuation. A one-line compound statement (``for i in x: f(i)``)
    counts, as in IPython. Only parsed, never compiled to bytecode (tens of
    microseconds for a typical line).
    """
    if not text.strip() or "\n" in text or "\r" in text or text[:1].isspace():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for invalid escapes
            compile(text, "<input>", "exec", _PARSE_ONLY, dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError):
        return False
    return True


def is_line_magic(text: str) -> bool:
    """True when ``text`` is one line that is a line magic (``%px a=1``): an IPython
    kernel calls it complete as it stands, whatever the magic's arguments.

    Not a cell magic (``%%px`` waits for its body), not indented, and not ending in a
    backslash (a continuation line follows).
    """
    return (
        text[:1] == "%"
        and text[1:2] != "%"
        and "\n" not in text
        and "\r" not in text
        and not text.rstrip().endswith("\\")
    )


def guess_complete(text: str) -> tuple[str, str]:
    """The local heuristic: Python's ``codeop`` plus the REPL's block rule.

    A compound statement stays open until a blank line, as in the Python
    REPL; a first line starting with ``%%`` (a cell magic) likewise. A line
    ending in ``?`` or starting with ``%`` or ``!`` is a complete command.
    """
    lines = text.split("\n")
    if not text.strip():
        return "complete", ""
    last = lines[-1]
    if lines[0].startswith("%%"):
        return ("complete", "") if not last.strip() else ("incomplete", "")
    if len(lines) == 1 and (text.rstrip().endswith("?") or text.lstrip()[:1] in "%!"):
        return "complete", ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for invalid escapes
            code = codeop.compile_command(text, "<input>", "exec")
    except (SyntaxError, ValueError, OverflowError):
        return "invalid", ""
    if code is None:
        return "incomplete", _next_indent(lines)
    block_open = last.strip() and (last[:1].isspace() or last.rstrip().endswith(":"))
    if block_open:
        return "incomplete", _next_indent(lines)
    return "complete", ""


def _next_indent(lines: list[str]) -> str:
    last = next((line for line in reversed(lines) if line.strip()), "")
    indent = last[: len(last) - len(last.lstrip())]
    if last.rstrip().endswith(":"):
        return indent + "    "
    if _DEDENT.match(last):
        return indent[:-4] if len(indent) >= 4 else ""
    return indent
