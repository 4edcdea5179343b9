"""Starting clusters: ``Cluster`` (a controller and local engines) for now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = ["Cluster"]

_EXPORTS = {"Cluster": "._cluster"}

if TYPE_CHECKING:
    from ._cluster import Cluster

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
