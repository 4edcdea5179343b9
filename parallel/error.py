"""The errors of ``parallel``, where ipyparallel users look for them (``ipp.error``)."""

from __future__ import annotations

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

__all__ = [
    "ClusterUnavailable",
    "CompositeError",
    "EngineError",
    "NoEnginesRegistered",
    "ParallelError",
    "RemoteError",
    "SchedulerError",
    "SerializationError",
    "TimeoutError",
]
