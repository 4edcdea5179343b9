"""Loom's Python kernel: a Jupyter kernel server built from small parts.

``KernelServer`` serves the shell channel with a handler table,
``IOThread`` owns iopub and control, ``Interpreter`` runs cells.
"""

from __future__ import annotations

from ._app import run_kernel
from ._interpreter import CellOutcome, Interpreter
from ._iothread import IOThread
from ._server import Handler, KernelServer

__all__ = ["CellOutcome", "Handler", "IOThread", "Interpreter", "KernelServer", "run_kernel"]
