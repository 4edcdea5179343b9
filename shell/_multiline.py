"""Is this input a whole cell? Ask the kernel, with a local fallback.

The kernel is the authority (``is_complete_request``: it knows its magics
and its language), but Enter must never wait long for it. If the kernel is
not usable (busy with another client's cell, dead, silent) or takes longer
than ``timeout``, :func:`guess_complete` decides for this one keypress; the
next keypress asks the kernel again, so a slow moment does not degrade the
console for good.
"""

from __future__ import annotations

import asyncio
import codeop
import re
import warnings

from kernel import KernelError

from ._kernel import KernelLink

__all__ = ["check_complete", "guess_complete"]

#: Seconds Enter waits for the kernel's answer before guessing locally.
IS_COMPLETE_TIMEOUT = 0.3
_DEDENT = re.compile(r"^\s*(return|pass|break|continue|raise)\b")


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
