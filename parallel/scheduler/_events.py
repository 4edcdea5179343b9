"""The scheduler's vocabulary: events in, instructions out.

Events are facts that already happened, named in the past tense; instructions
are what the driver must do next, named as imperatives (``docs/architecture.md``).
All are frozen, slotted, keyword-only dataclasses, so tests compare whole lists
of them with ``==``. Every one carries ``stimulus_id``: the ``msg_id`` (or tick
id) of the message that caused it, so one task's story can be grepped end to end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "AbortOnEngine",
    "EngineId",
    "EngineLost",
    "EngineRegistered",
    "FailTask",
    "FailureKind",
    "ForgetEngine",
    "Instruction",
    "ReplyToClient",
    "RetryOn",
    "SchedulerEvent",
    "SendTask",
    "TaskAbortRequested",
    "TaskFinished",
    "TaskForgotten",
    "TaskStatus",
    "TaskSubmitted",
    "Tick",
]

#: An engine's number, assigned by ``EngineRegistry`` in registration order from 0.
EngineId = int

#: The ``status`` of an engine's ``apply_reply`` (ipyparallel messaging, apply_reply).
TaskStatus = Literal["ok", "error", "aborted"]

#: Which failures use up a retry: every failure, or only the death of the engine.
RetryOn = Literal["any", "engine-death"]

#: Why the scheduler itself failed a task (no engine reply is relayed for these).
FailureKind = Literal["engine-died", "dependency-failed", "unsatisfiable", "aborted", "timeout"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerEvent:
    """Base of every event. ``stimulus_id`` names the message (or tick) that caused it."""

    stimulus_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineRegistered(SchedulerEvent):
    """An engine is up and may be given tasks (first time, or back after being lost).

    ``labels`` and ``resources`` (name -> amount in all) are what it registered with
    (``parallel.scheduler._fit``); empty for an engine that registered none.
    """

    engine: EngineId
    labels: frozenset[str] = frozenset()
    resources: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineLost(SchedulerEvent):
    """An engine died or stopped answering its heartbeat; ``reason`` says which."""

    engine: EngineId
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSubmitted(SchedulerEvent):
    """A client asked for ``task_id`` to run.

    ``targets`` restricts the engines it may run on (``None``: any engine).
    A ``direct`` task has exactly one target and ignores ``hwm`` (a DirectView
    sends one task per engine). ``after`` names tasks that must finish ``ok``
    first. ``retries`` re-runs allowed, on failures of kind ``retry_on``.
    ``deadline`` is a time on the driver's ``Tick`` clock by which the task
    must have been sent to an engine. ``max_engine_deaths``: after this many
    engines died while holding it, the task is poison and fails whatever its
    retries (``None``: the scheduler's ``poison_after``).
    """

    task_id: str
    targets: frozenset[EngineId] | None
    direct: bool = False
    after: frozenset[str] = frozenset()
    retries: int = 0
    retry_on: RetryOn = "any"
    deadline: float | None = None
    #: Labels every engine it runs on must carry, and resources (name -> amount) it
    #: consumes there while ASSIGNED (``parallel.scheduler._fit``).
    labels: frozenset[str] = frozenset()
    resources: Mapping[str, float] = field(default_factory=dict)
    max_engine_deaths: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFinished(SchedulerEvent):
    """``engine`` replied to ``task_id`` with ``status``."""

    task_id: str
    engine: EngineId
    status: TaskStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAbortRequested(SchedulerEvent):
    """A client asked for ``task_id`` to be aborted (ipyparallel messaging, abort_request)."""

    task_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskForgotten(SchedulerEvent):
    """The client has the outcome of finished ``task_id``: the scheduler may drop it.

    Later tasks can no longer name it in ``after`` (they fail as ``unsatisfiable``);
    without this, memory would grow with every task ever run.
    """

    task_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick(SchedulerEvent):
    """The driver's clock read ``now`` (seconds, any fixed origin, never going back)."""

    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    """Base of every instruction. ``stimulus_id`` is that of the event that caused it."""

    stimulus_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SendTask(Instruction):
    """Send ``task_id``'s ``apply_request`` to ``engine``."""

    task_id: str
    engine: EngineId


@dataclass(frozen=True, slots=True, kw_only=True)
class AbortOnEngine(Instruction):
    """Ask ``engine``, which holds ``task_id``, to abort it if it has not started.

    The engine answers with an ``aborted`` reply, or with the task's ordinary
    reply if it already ran; either arrives as :class:`TaskFinished`.
    """

    task_id: str
    engine: EngineId


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyToClient(Instruction):
    """Relay ``engine``'s reply to ``task_id`` (status ``status``) to the client."""

    task_id: str
    engine: EngineId
    status: TaskStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class FailTask(Instruction):
    """Answer ``task_id`` with an error made by the scheduler: no engine reply exists."""

    task_id: str
    kind: FailureKind
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ForgetEngine(Instruction):
    """``engine`` is gone: close its connection and stop its heartbeat."""

    engine: EngineId
