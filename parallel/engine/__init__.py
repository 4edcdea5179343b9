"""Engines: Loom's kernel server plus an ``apply_request`` handler, registered with a controller.

``python -m parallel.engine --file CLUSTER.json`` (``loom engine``) runs one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = [
    "EngineIdentity",
    "EngineStartError",
    "engine_connection_file",
    "make_engine",
    "run_engine",
]

_EXPORTS = {
    "EngineIdentity": "._apply",
    "EngineStartError": "._engine",
    "engine_connection_file": "._engine",
    "make_engine": "._engine",
    "run_engine": "._engine",
}

if TYPE_CHECKING:
    from ._apply import EngineIdentity
    from ._engine import EngineStartError, engine_connection_file, make_engine, run_engine

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
