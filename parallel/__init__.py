"""Loom's engine pool, compatible with ipyparallel: controller, engines, client.

Rooms (``docs/architecture.md``): ``scheduler/`` (pure: where tasks run) so far.
Names load lazily (PEP 562), so importing ``parallel`` costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = ["ParallelError", "SchedulerError"]

_EXPORTS = {
    "ParallelError": "._errors",
    "SchedulerError": "._errors",
}

if TYPE_CHECKING:
    from ._errors import ParallelError, SchedulerError

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
