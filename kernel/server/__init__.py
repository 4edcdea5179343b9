"""Loom's Python kernel: a Jupyter kernel server built from small parts.

``KernelServer`` serves the shell channel with a handler table (``_server``),
``channels/`` holds what runs on helper threads (``IOThread`` owns iopub and
control), ``interpreter/`` runs cells, ``introspection/`` answers completion and
inspection, ``magics/`` holds the ``%`` commands. Names load lazily: starting a
kernel imports only what answering the first ``kernel_info_request`` needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__all__ = [
    "CallOutcome",
    "CellOutcome",
    "Handler",
    "IOThread",
    "Interpreter",
    "KernelServer",
    "end_process",
    "run_kernel",
    "serve",
    "start_io",
]

_EXPORTS = {
    "end_process": "._app",
    "run_kernel": "._app",
    "serve": "._app",
    "start_io": "._app",
    "CallOutcome": ".interpreter._interpreter",
    "CellOutcome": ".interpreter._interpreter",
    "Interpreter": ".interpreter._interpreter",
    "IOThread": ".channels._iothread",
    "Handler": "._server",
    "KernelServer": "._server",
}

if TYPE_CHECKING:
    from ._app import end_process, run_kernel, serve, start_io
    from ._server import Handler, KernelServer
    from .channels._iothread import IOThread
    from .interpreter._interpreter import CallOutcome, CellOutcome, Interpreter


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
