"""ANSI colours for tracebacks, with Pygments imported on the first coloured traceback only
(kernel start-up stays fast). Every function degrades to uncoloured text if Pygments fails."""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = ["highlight_python", "paint"]

_EMPTY_COLOUR = re.compile(r"\x1b\[[0-9;]*m\x1b\[39;49;00m")


def paint(style: str, text: str) -> str:
    """``text`` in a Pygments console ``style`` (``"*red*"`` bold red, ``"green"``...)."""
    try:
        return str(_pygments_console().ansiformat(style, text))
    except Exception:
        return text


def highlight_python(lines: list[str]) -> list[str]:
    """``lines`` of Python highlighted together (so multi-line tokens lex right); the same
    number of lines comes back, else ``lines`` unchanged."""
    if not lines:
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
