"""Task records, their states, and the transition table that moves them.

:class:`TaskBook` is the scheduler's ledger: every task ever submitted, filed
under exactly one :class:`TaskState`. Tasks change state only through
:meth:`TaskBook.move`, which consults :data:`TRANSITIONS` and raises
:class:`SchedulerError` for a move the table does not list, before changing
anything. Which move to make is the scheduler's business (``_state``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from .._errors import SchedulerError
from ._events import EngineId, FailureKind, TaskSubmitted

__all__ = ["FAILURE_KINDS", "TRANSITIONS", "TaskBook", "TaskRecord", "TaskState", "Trigger"]


class TaskState(enum.Enum):
    """Where a task is in its life (``_state`` module docstring)."""

    WAITING = "waiting"
    READY = "ready"
    ASSIGNED = "assigned"
    DONE = "done"
    FAILED = "failed"

    # Members are singletons compared by identity, so identity hashes them too: Enum's own
    # __hash__ is Python code (hash of the name), and every move of every task hashed a
    # state three or four times (dict keys here, in ``TRANSITIONS``), ~3 us a task.
    __hash__ = object.__hash__


#: What moves a task: the names of the arrows in the ``_state`` module docstring.
Trigger = Literal[
    "submit",
    "deps-met",
    "dependency-failed",
    "unsatisfiable",
    "abort",
    "timeout",
    "send",
    "retry",
    "finished-ok",
    "finished-failed",
    "engine-died",
]

_W, _R, _A = TaskState.WAITING, TaskState.READY, TaskState.ASSIGNED
_D, _F = TaskState.DONE, TaskState.FAILED

#: (state, trigger) -> next state; ``None`` is "not yet submitted". Anything else is refused.
TRANSITIONS: Final[Mapping[tuple[TaskState | None, Trigger], TaskState]] = {
    (None, "submit"): _W,
    (_W, "deps-met"): _R,
    (_W, "dependency-failed"): _F,
    (_W, "unsatisfiable"): _F,
    (_W, "abort"): _F,
    (_W, "timeout"): _F,
    (_R, "send"): _A,
    (_R, "unsatisfiable"): _F,
    (_R, "abort"): _F,
    (_R, "timeout"): _F,
    (_A, "abort"): _A,
    (_A, "retry"): _R,
    (_A, "finished-ok"): _D,
    (_A, "finished-failed"): _F,
    (_A, "engine-died"): _F,
}

#: The failure a client is told of, by the trigger that moved the task to FAILED
#: without an engine reply (``FailTask.kind``).
FAILURE_KINDS: Final[Mapping[Trigger, FailureKind]] = {
    "unsatisfiable": "unsatisfiable",
    "dependency-failed": "dependency-failed",
    "abort": "aborted",
    "timeout": "timeout",
    "engine-died": "engine-died",
}


@dataclass(slots=True, eq=False)
class TaskRecord:
    """What the scheduler knows about one task. Only the scheduler changes it."""

    #: The submission, as the client made it.
    spec: TaskSubmitted
    #: ``spec.task_id``, kept here: read several times per event.
    task_id: str
    #: Submission order, the order of scans over many tasks.
    seq: int
    #: Re-runs still allowed.
    retries_left: int
    #: ``None`` only until :meth:`TaskBook.add` files it.
    state: TaskState | None = None
    #: The engine holding it; set exactly while ASSIGNED.
    engine: EngineId | None = None
    #: Tasks in ``spec.after`` that are not DONE yet.
    pending: set[str] = field(default_factory=set)
    #: Tasks whose ``after`` names this one, in submission order.
    dependents: list[str] = field(default_factory=list)
    #: Engines that replied ``error`` to it: a retry avoids them when it can.
    failed_on: set[EngineId] = field(default_factory=set)
    #: Engines lost while they held it, in the order they died: one entry per death, so
    #: an engine replaced under the same id and killed again counts twice (poison tasks),
    #: and stale replies are recognised by engine.
    killed: list[EngineId] = field(default_factory=list)
    #: How many answers (``ReplyToClient``/``FailTask``) the client was given: exactly one
    #: once DONE or FAILED, none before (``SchedulerState.validate``).
    answers: int = 0
    #: A client asked to abort it while it was ASSIGNED: no more retries.
    abort_requested: bool = False
    #: Its targets, labels and resources as one hashable value, made once
    #: (``SchedulerState._next_placement`` compares tasks by it).
    placement_key: object = None


class TaskBook:
    """Every task ever submitted, each filed under exactly one state."""

    def __init__(self) -> None:
        #: Every task by id; finished ones stay, to answer ``after`` lookups.
        self._tasks: dict[str, TaskRecord] = {}
        #: The ids filed under each state (checked by :meth:`validate`).
        self._in: dict[TaskState, dict[str, None]] = {state: {} for state in TaskState}
        #: Submission counter (``TaskRecord.seq``): never reused, even after :meth:`forget`.
        self._submitted = 0

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, spec: TaskSubmitted) -> TaskRecord:
        """File a new task as WAITING; a known ``task_id`` raises :class:`SchedulerError`."""
        if spec.task_id in self._tasks:
            self.expect(self._tasks[spec.task_id], "submit")
        task = TaskRecord(
            spec=spec, task_id=spec.task_id, seq=self._submitted, retries_left=spec.retries
        )
        self._submitted += 1
        self._tasks[spec.task_id] = task
        self.move(task, "submit")
        return task

    def forget(self, task: TaskRecord) -> None:
        """Drop a finished (DONE or FAILED) task; :class:`SchedulerError` for any other."""
        if task.state not in (TaskState.DONE, TaskState.FAILED):
            raise SchedulerError(f"task {task.task_id!r} is {task.state}: it cannot be forgotten")
        del self._in[task.state][task.task_id]
        del self._tasks[task.task_id]

    def get(self, task_id: str) -> TaskRecord:
        """The task called ``task_id``; :class:`SchedulerError` if it was never submitted."""
        task = self._tasks.get(task_id)
        if task is None:
            raise SchedulerError(f"unknown task {task_id!r}")
        return task

    def expect(self, task: TaskRecord, trigger: Trigger) -> TaskState:
        """The state ``trigger`` moves ``task`` to; :class:`SchedulerError` if none."""
        target = TRANSITIONS.get((task.state, trigger))
        if target is None:
            state = task.state.value if task.state else "new"
            raise SchedulerError(f"task {task.task_id!r} is {state}: {trigger!r} is not allowed")
        return target

    def move(self, task: TaskRecord, trigger: Trigger) -> None:
        """Move ``task`` as the table says, or raise :class:`SchedulerError` and change nothing."""
        state = task.state
        target = TRANSITIONS.get((state, trigger))
        if target is None:
            target = self.expect(task, trigger)  # raises, naming the move
        in_ = self._in
        task_id = task.task_id
        if state is not None:
            del in_[state][task_id]
        in_[target][task_id] = None
        task.state = target

    def in_state(self, *states: TaskState) -> list[TaskRecord]:
        """The tasks in any of ``states``, in submission order (a snapshot: safe to move them)."""
        found = [self._tasks[task_id] for state in states for task_id in self._in[state]]
        return sorted(found, key=lambda task: task.seq)

    def queue(self, state: TaskState) -> Iterator[TaskRecord]:
        """The tasks in ``state``, in the order they entered it (live: move none meanwhile)."""
        return map(self._tasks.__getitem__, self._in[state])

    def records(self) -> list[TaskRecord]:
        """Every task, in submission order."""
        return list(self._tasks.values())

    def validate(self) -> None:
        """Each task filed once, under its own state; WAITING ones have something to wait for."""
        seen: dict[str, TaskState] = {}
        for state, ids in self._in.items():
            for task_id in ids:
                if task_id in seen:
                    raise SchedulerError(f"task {task_id!r} is both {seen[task_id]} and {state}")
                seen[task_id] = state
                if self._tasks[task_id].state is not state:
                    raise SchedulerError(f"task {task_id!r} is filed under the wrong state")
        if seen.keys() != self._tasks.keys():
            raise SchedulerError(f"tasks in no state: {sorted(self._tasks.keys() - seen.keys())}")
        for task in self.in_state(_W, _R):
            unfinished = all(self._tasks[d].state in (_W, _R, _A) for d in task.pending)
            if (task.state is _W) != bool(task.pending) or not unfinished:
                pending = sorted(task.pending)
                raise SchedulerError(f"{task.state} task {task.task_id!r} has pending {pending}")
