"""Loom's engine pool, compatible with ipyparallel: ``import parallel as ipp``.

``Cluster(n=4)`` starts a controller and four engines; ``Client()`` connects to a
running cluster; ``rc[:]`` (a ``DirectView``) and ``rc.load_balanced_view()`` run code
on the engines; every call gives an ``AsyncResult``. The user guide is
``docs/parallel.md``. Names load lazily (PEP 562): importing ``parallel`` costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = [
    "AsyncResult",
    "Client",
    "Cluster",
    "ClusterUnavailable",
    "CompositeError",
    "DirectView",
    "EngineError",
    "ExecuteReply",
    "LoadBalancedView",
    "NoEnginesRegistered",
    "ParallelError",
    "RemoteError",
    "SchedulerError",
    "SerializationError",
    "TimeoutError",
    "error",
    "interactive",
]

_EXPORTS = {
    "AsyncResult": ".client._asyncresult",
    "ExecuteReply": ".client._asyncresult",
    "Client": ".client._pool_client",
    "interactive": ".client._remote",
    "DirectView": ".client._views",
    "LoadBalancedView": ".client._views",
    "Cluster": ".cluster._cluster",
    "ClusterUnavailable": "._errors",
    "CompositeError": "._errors",
    "EngineError": "._errors",
    "NoEnginesRegistered": "._errors",
    "ParallelError": "._errors",
    "RemoteError": "._errors",
    "SchedulerError": "._errors",
    "SerializationError": "._errors",
    "TimeoutError": "._errors",
}

if TYPE_CHECKING:
    from ._errors import (
        ClusterUnavailable,
        CompositeError,
        EngineError,
        NoEnginesRegistered,
        ParallelError,
        RemoteError,
        SchedulerError,
        SerializationError,
        TimeoutError,
    )
    from .client._asyncresult import AsyncResult, ExecuteReply
    from .client._pool_client import Client
    from .client._remote import interactive
    from .client._views import DirectView, LoadBalancedView
    from .cluster._cluster import Cluster

_exported = lazy_exports(__name__, _EXPORTS, globals())


def __getattr__(name: str) -> object:
    if name == "error":  # ``ipp.error.RemoteError`` works without importing it first
        import importlib

        return importlib.import_module(".error", __name__)
    return _exported(name)
