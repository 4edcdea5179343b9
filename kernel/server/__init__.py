"""Loom's Python kernel: a Jupyter kernel server built from small parts.

``KernelServer`` serves the shell channel with a handler table,
``IOThread`` owns iopub and control, ``Interpreter`` runs cells.
Names load lazily: starting a kernel imports only what answering the first
``kernel_info_request`` needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__all__ = ["CellOutcome", "Handler", "IOThread", "Interpreter", "KernelServer", "run_kernel"]

_EXPORTS = {
    "run_kernel": "._app",
    "CellOutcome": "._interpreter",
    "Interpreter": "._interpreter",
    "IOThread": "._iothread",
    "Handler": "._server",
    "KernelServer": "._server",
}

if TYPE_CHECKING:
    from ._app import run_kernel
    from ._interpreter import CellOutcome, Interpreter
    from ._iothread import IOThread
    from ._server import Handler, KernelServer


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
