"""Running cells on the main thread: namespace, execution count, display, history.

No zmq here: the interpreter publishes through a callable it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

__all__ = [
    "CallOutcome",
    "CellOutcome",
    "HistoryStore",
    "Interpreter",
    "transform_cell",
]

_EXPORTS = {
    "CallOutcome": "._interpreter",
    "CellOutcome": "._interpreter",
    "Interpreter": "._interpreter",
    "HistoryStore": "._history_store",
    "transform_cell": "._transform",
}

if TYPE_CHECKING:
    from ._history_store import HistoryStore
    from ._interpreter import CallOutcome, CellOutcome, Interpreter
    from ._transform import transform_cell


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
