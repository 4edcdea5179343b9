"""``loom run SCRIPT|NB.ipynb``: run a script or notebook on a kernel, non-interactively."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = [
    "add_run_arguments",
    "main",
    "run_batch",
]

_EXPORTS = {
    "add_run_arguments": "._run",
    "run_batch": "._run",
    "main": "._run",
}

if TYPE_CHECKING:
    from ._run import add_run_arguments, main, run_batch


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
