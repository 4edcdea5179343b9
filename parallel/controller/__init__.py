"""The controller: one process, one asyncio loop; the hub, heartbeats and local engines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = ["READY_LINE", "Hub", "run_controller"]

_EXPORTS = {
    "READY_LINE": "._controller",
    "run_controller": "._controller",
    "Hub": "._hub",
}

if TYPE_CHECKING:
    from ._controller import READY_LINE, run_controller
    from ._hub import Hub

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
