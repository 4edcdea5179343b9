"""Answers that are pure functions of (code, cursor, namespace): completion,
inspection and code completeness. They never run user code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

__all__ = [
    "complete",
    "format_help",
    "inspect",
    "is_complete",
]

_EXPORTS = {
    "complete": "._completion",
    "inspect": "._inspection",
    "format_help": "._inspection",
    "is_complete": "._is_complete",
}

if TYPE_CHECKING:
    from ._completion import complete
    from ._inspection import format_help, inspect
    from ._is_complete import is_complete


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
