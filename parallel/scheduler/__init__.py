"""Where tasks run, decided purely: the load-balancing schemes (``_schemes``) so far."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = [
    "SCHEMES",
    "Scheme",
    "leastload",
    "lru",
    "plainrandom",
    "twobin",
    "weighted",
]

_EXPORTS = {
    "SCHEMES": "._schemes",
    "Scheme": "._schemes",
    "leastload": "._schemes",
    "lru": "._schemes",
    "plainrandom": "._schemes",
    "twobin": "._schemes",
    "weighted": "._schemes",
}

if TYPE_CHECKING:
    from ._schemes import SCHEMES, Scheme, leastload, lru, plainrandom, twobin, weighted

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
