"""Where tasks run, decided purely: events in, instructions out.

``SchedulerState`` (``_state``) places tasks on engines (``_pool``), moving
them through the transition table of ``_task_book``; ``EngineRegistry`` and
``HeartState`` (``_engines``) turn registrations and heartbeats into the
engine events it consumes; ``_schemes`` holds the load-balancing choosers.
Standard library only, no I/O, no clocks: a controller's async driver feeds
the events and carries out the instructions (``docs/architecture.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = [
    "SCHEMES",
    "TRANSITIONS",
    "AbortOnEngine",
    "EngineId",
    "EngineLost",
    "EngineRegistered",
    "EngineRegistry",
    "FailTask",
    "FailureKind",
    "ForgetEngine",
    "HeartState",
    "HeartbeatAnswered",
    "Instruction",
    "RegistrationReceived",
    "ReplyToClient",
    "RetryOn",
    "SchedulerError",
    "SchedulerEvent",
    "SchedulerState",
    "Scheme",
    "SendTask",
    "TaskAbortRequested",
    "TaskFinished",
    "TaskForgotten",
    "TaskState",
    "TaskStatus",
    "TaskSubmitted",
    "Tick",
    "Trigger",
    "leastload",
    "lru",
    "plainrandom",
    "twobin",
    "weighted",
]

_EXPORTS = {
    "SchedulerError": ".._errors",
    "EngineRegistry": "._engines",
    "HeartState": "._engines",
    "HeartbeatAnswered": "._engines",
    "RegistrationReceived": "._engines",
    "SCHEMES": "._schemes",
    "Scheme": "._schemes",
    "leastload": "._schemes",
    "lru": "._schemes",
    "plainrandom": "._schemes",
    "twobin": "._schemes",
    "weighted": "._schemes",
    "SchedulerState": "._state",
    "TRANSITIONS": "._task_book",
    "TaskState": "._task_book",
    "Trigger": "._task_book",
    "AbortOnEngine": "._events",
    "EngineId": "._events",
    "EngineLost": "._events",
    "EngineRegistered": "._events",
    "FailTask": "._events",
    "FailureKind": "._events",
    "ForgetEngine": "._events",
    "Instruction": "._events",
    "ReplyToClient": "._events",
    "RetryOn": "._events",
    "SchedulerEvent": "._events",
    "SendTask": "._events",
    "TaskAbortRequested": "._events",
    "TaskFinished": "._events",
    "TaskForgotten": "._events",
    "TaskStatus": "._events",
    "TaskSubmitted": "._events",
    "Tick": "._events",
}

if TYPE_CHECKING:
    from .._errors import SchedulerError
    from ._engines import EngineRegistry, HeartbeatAnswered, HeartState, RegistrationReceived
    from ._events import (
        AbortOnEngine,
        EngineId,
        EngineLost,
        EngineRegistered,
        FailTask,
        FailureKind,
        ForgetEngine,
        Instruction,
        ReplyToClient,
        RetryOn,
        SchedulerEvent,
        SendTask,
        TaskAbortRequested,
        TaskFinished,
        TaskForgotten,
        TaskStatus,
        TaskSubmitted,
        Tick,
    )
    from ._schemes import SCHEMES, Scheme, leastload, lru, plainrandom, twobin, weighted
    from ._state import SchedulerState
    from ._task_book import TRANSITIONS, TaskState, Trigger

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
