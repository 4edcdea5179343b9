"""The kernel's ``%`` and ``%%`` commands: the registry and one module per family."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

__all__ = [
    "CANNOT_AWAIT",
    "Magics",
    "UsageError",
]

_EXPORTS = {
    "CANNOT_AWAIT": "._registry",
    "Magics": "._registry",
    "UsageError": "._args",
}

if TYPE_CHECKING:
    from ._args import UsageError
    from ._registry import CANNOT_AWAIT, Magics


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
