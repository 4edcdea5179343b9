"""``loom [console]``: the interactive console. The only room of Loom that imports
prompt_toolkit (``tests/test_layers.py`` checks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = [
    "run_console",
]

_EXPORTS = {
    "run_console": "._startup",
}

if TYPE_CHECKING:
    from ._startup import run_console


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
