"""Loom's engine pool, compatible with ipyparallel: ``import parallel as ipp``.

``Cluster(n=4)`` starts a controller and four engines; ``Client()`` connects to a
running cluster; ``rc[:]`` (a ``DirectView``) and ``rc.load_balanced_view()`` run code
on the engines; every call gives an ``AsyncResult``. The user guide is
``docs/parallel.md``. Names load lazily (PEP 562): importing ``parallel`` costs nothing.

``%load_ext parallel`` gives the ``%px`` magics, in Loom's kernel
(:func:`load_loom_extension`) and in IPython (:func:`load_ipython_extension`); importing
``parallel`` imports neither the magics nor IPython.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kernel._lazy import lazy_exports

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "AsyncResult",
    "Client",
    "ClientClosed",
    "Cluster",
    "ClusterUnavailable",
    "CompositeError",
    "ControllerLost",
    "DirectView",
    "EngineError",
    "ExecuteReply",
    "LoadBalancedView",
    "NoEnginesRegistered",
    "ParallelError",
    "Reference",
    "RemoteError",
    "SchedulerError",
    "SerializationError",
    "TimeoutError",
    "ViewExecutor",
    "error",
    "interactive",
    "load_ipython_extension",
    "load_loom_extension",
    "require",
    "unload_ipython_extension",
    "unload_loom_extension",
    "use_cloudpickle",
    "use_dill",
    "use_pickle",
]

_EXPORTS = {
    "AsyncResult": ".client._asyncresult",
    "ExecuteReply": ".client._asyncresult",
    "Client": ".client._pool_client",
    "interactive": ".client._remote",
    "Reference": ".client._remote",
    "require": ".client._remote",
    "ViewExecutor": ".client._executor",
    "use_cloudpickle": ".client._pickles",
    "use_dill": ".client._pickles",
    "use_pickle": ".client._pickles",
    # concurrent.futures' names, for AsyncResult.get(return_when=...), as ipyparallel has.
    "ALL_COMPLETED": "concurrent.futures",
    "FIRST_COMPLETED": "concurrent.futures",
    "FIRST_EXCEPTION": "concurrent.futures",
    "DirectView": ".client._views",
    "LoadBalancedView": ".client._views",
    "Cluster": ".cluster._cluster",
    "ClientClosed": "._errors",
    "ClusterUnavailable": "._errors",
    "CompositeError": "._errors",
    "ControllerLost": "._errors",
    "EngineError": "._errors",
    "NoEnginesRegistered": "._errors",
    "ParallelError": "._errors",
    "RemoteError": "._errors",
    "SchedulerError": "._errors",
    "SerializationError": "._errors",
    "TimeoutError": "._errors",
}

if TYPE_CHECKING:
    from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION

    from kernel.server.magics import Magics

    from ._errors import (
        ClientClosed,
        ClusterUnavailable,
        CompositeError,
        ControllerLost,
        EngineError,
        NoEnginesRegistered,
        ParallelError,
        RemoteError,
        SchedulerError,
        SerializationError,
        TimeoutError,
    )
    from .client._asyncresult import AsyncResult, ExecuteReply
    from .client._executor import ViewExecutor
    from .client._pickles import use_cloudpickle, use_dill, use_pickle
    from .client._pool_client import Client
    from .client._remote import Reference, interactive, require
    from .client._views import DirectView, LoadBalancedView
    from .cluster._cluster import Cluster

_exported = lazy_exports(__name__, _EXPORTS, globals())


def __getattr__(name: str) -> object:
    if name == "error":  # ``ipp.error.RemoteError`` works without importing it first
        import importlib

        return importlib.import_module(".error", __name__)
    return _exported(name)


def load_loom_extension(magics: Magics) -> None:
    """``%load_ext parallel`` in Loom's kernel: ``%px``, ``%%px``, ``%pxresult``,
    ``%pxconfig``, ``%autopx`` and ``%cluster``, as async magics (the kernel stays
    responsive and Ctrl-C interrupts the engines while they run)."""
    from .magics._px_loom import load_loom_extension as load

    load(magics)


def unload_loom_extension(magics: Magics) -> None:
    """``%unload_ext parallel`` in Loom's kernel; stops a cluster ``%cluster start`` started."""
    from .magics._px_loom import unload_loom_extension as unload

    unload(magics)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext parallel`` in IPython or ipykernel: the same magics, blocking (the
    client pumps its sockets; no thread)."""
    from .magics._px_ipython import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext parallel`` in IPython; stops a cluster ``%cluster start`` started."""
    from .magics._px_ipython import unload_ipython_extension as unload

    unload(ipython)
