"""Load balancing on the client: the pure scheduler, driven by this client's requests.

Theory of operation
-------------------
A load-balanced task is submitted to :class:`~parallel.scheduler.SchedulerState`
(``TaskSubmitted``), which answers with instructions: ``SendTask`` (the driver sends
the ``apply_request`` to that engine), ``ReplyToClient`` (the engine's reply stands),
``FailTask`` (the scheduler's own error: the engine died with no retries left, no engine
can take it, ...). Replies come back as ``TaskFinished``, engine deaths as
``EngineLost``; a retry is a new ``SendTask`` for the same task id, sent as a new message
whose reply the client maps back to the task.

The task id is the msg_id the caller's ``AsyncResult`` knows; each attempt has its own
msg_id on the wire. The client runs tasks on engines directly, so the balancing is per
client: two clients sharing a cluster balance independently (``docs/parallel.md``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kernel.protocol import new_id
from parallel.scheduler import (
    AbortOnEngine,
    EngineLost,
    EngineRegistered,
    FailTask,
    Instruction,
    ReplyToClient,
    SchedulerEvent,
    SchedulerState,
    SendTask,
    TaskAbortRequested,
    TaskFinished,
    TaskForgotten,
    TaskStatus,
    TaskSubmitted,
    Tick,
    leastload,
)

from .._errors import EngineError, RemoteError

if TYPE_CHECKING:
    from ._pool_client import Client

__all__ = ["Balancer"]

#: Most tasks queued on one engine at once; the rest wait in the scheduler, so a late
#: engine or a freed one still gets work (ipyparallel's hwm, whose default is 1).
HWM = 2
#: The same for an engine that answers 50 tasks a second or more (its tasks are short):
#: an engine takes queued tasks several per wake-up, ~15% less CPU per trivial task in
#: all processes (``parallel.scheduler._state``, depth; docs/architecture.md).
DEEP_HWM = 8
#: Seconds a task with retries waits for an engine when every engine it may run on was
#: lost: long enough for the controller to replace a dead engine (well under a second
#: locally), short enough that a pool that is gone for good is reported, not waited on.
ORPHAN_GRACE = 10.0


class Balancer:
    """Runs load-balanced tasks for one client; see the module docstring."""

    def __init__(self, client: Client, engines: list[int]) -> None:
        self._client = client
        self.state = SchedulerState(
            scheme=leastload,
            rng=random.Random(0),
            hwm=HWM,
            deep_hwm=DEEP_HWM,
            orphan_grace=ORPHAN_GRACE,
        )
        #: task id -> what to send for it.
        self._buffers: dict[str, list[bytes]] = {}
        #: msg_id of the attempt on the wire -> task id.
        self._attempts: dict[str, str] = {}
        #: task id -> the error of its latest failed attempt (what the task fails with).
        self._errors: dict[str, RemoteError] = {}
        #: task id -> (engine, value) of the attempt whose reply may stand.
        self._values: dict[str, tuple[int, object]] = {}
        #: Tasks settled while handling events, dropped from the scheduler right after.
        self._forget: list[str] = []
        #: How many tasks were submitted with a timeout (no clock events without one).
        self._deadlines = 0
        #: Outcomes decided before the caller tracked the task's result (``FailTask`` at
        #: submission), delivered by :meth:`deliver_early`.
        self._early: dict[str, tuple[int | None, object, RemoteError | None]] = {}
        self._run(*(self._registered(e, f"known-{e}") for e in engines))

    def submit(
        self,
        buffers: list[bytes],
        targets: frozenset[int] | None,
        *,
        retries: int,
        retry_on: str,
        timeout: float | None = None,
        after: frozenset[str] = frozenset(),
        max_engine_deaths: int | None = None,
        labels: frozenset[str] = frozenset(),
        resources: Mapping[str, float] | None = None,
    ) -> str:
        """Queue a task; its id (what its ``AsyncResult`` waits for).

        ``timeout``: seconds the task may wait here before it is sent to an engine
        (ipyparallel's flag); later, it fails with ``TaskTimeout``. ``after``: tasks of
        this balancer, still unsettled, that must succeed first. ``labels``, ``resources``:
        what its engine must carry, and have free (``parallel.scheduler._fit``).
        """
        task_id = new_id()
        self._buffers[task_id] = buffers
        deadline = None
        if timeout is not None:
            deadline = time.monotonic() + timeout
            self._deadlines += 1
        event = TaskSubmitted(
            task_id=task_id,
            targets=targets,
            retries=retries,
            retry_on="engine-death" if retry_on == "engine-death" else "any",
            deadline=deadline,
            after=after,
            max_engine_deaths=max_engine_deaths,
            labels=labels,
            resources=dict(resources or {}),
            stimulus_id=task_id,
        )
        self._run(event)
        return task_id

    def reject(self, error: RemoteError) -> str:
        """A task that fails at once with ``error`` (a dependency that already failed)."""
        task_id = new_id()
        self._early[task_id] = (None, None, error)
        return task_id

    def knows(self, task_id: str) -> bool:
        """Whether ``task_id`` is a task of this balancer not yet settled."""
        return task_id in self._buffers

    def is_attempt(self, msg_id: str) -> bool:
        """Whether ``msg_id`` is a request this balancer sent (an attempt of a task)."""
        return msg_id in self._attempts

    def unassigned(self) -> list[str]:
        """The ids of tasks waiting here for an engine (none of their attempts out)."""
        sent = set(self._attempts.values())
        return [task_id for task_id in self._buffers if task_id not in sent]

    @property
    def unsettled(self) -> set[str]:
        """The ids of this balancer's tasks not settled yet: waiting for an engine, or
        sent (their attempts are also the engine links' pending requests)."""
        return set(self._buffers)

    def tick(self) -> None:
        """Fail tasks whose ``timeout`` passed before they were sent, and judge which
        engines are fast (the client calls this while it waits, every 50 ms to
        ``Pump.TICK`` seconds)."""
        if self._deadlines or self.state.waiting_for_engines or self.state.paces:
            now = time.monotonic()
            self._run(Tick(now=now, stimulus_id=f"tick-{now}"))

    def engine_registered(self, engine: int) -> None:
        self._run(self._registered(engine, f"registered-{engine}"))

    def _registered(self, engine: int, sid: str) -> EngineRegistered:
        """``engine`` is up, with the labels and resources the hub's record gives it."""
        record = self._client._records.get(engine)
        if record is None:
            return EngineRegistered(engine=engine, stimulus_id=sid)
        labels, resources = frozenset(record.labels), dict(record.resources)
        return EngineRegistered(engine=engine, labels=labels, resources=resources, stimulus_id=sid)

    def engine_lost(self, engine: int, reason: str) -> None:
        if engine in self.state.live_engines:  # the scheduler refuses a second report
            self._run(EngineLost(engine=engine, reason=reason, stimulus_id=f"lost-{engine}"))

    def finished(self, msg_id: str, engine: int, value: object, error: RemoteError | None) -> bool:
        """An attempt finished; True if it was one of ours (the balancer settles the task)."""
        task_id = self._attempts.pop(msg_id, None)
        if task_id is None:
            return False
        if isinstance(error, EngineError):
            return True  # the EngineLost event that follows decides: retry or FailTask
        if error is None:
            self._errors.pop(task_id, None)  # an earlier attempt's error no longer stands
        else:
            self._errors[task_id] = error
        self._values[task_id] = (engine, value)
        status: TaskStatus = "ok"
        if error is not None:
            status = "aborted" if error.ename == "TaskAborted" else "error"
        self._run(TaskFinished(task_id=task_id, engine=engine, status=status, stimulus_id=msg_id))
        return True

    def deliver_early(self, task_id: str) -> None:
        """Settle a just-tracked result whose task was decided at submission."""
        outcome = self._early.pop(task_id, None)
        if outcome is not None:
            self._deliver(task_id, *outcome)

    def abort(self, ids: list[str]) -> list[str]:
        """Abort tasks still queued here; the ids left for engines to abort."""
        left = []
        for task_id in ids:
            if task_id in self._buffers:
                self._run(TaskAbortRequested(task_id=task_id, stimulus_id=f"abort-{task_id}"))
            else:
                left.append(task_id)
        return left

    def _run(self, *events: SchedulerEvent) -> None:
        # Tasks settled by earlier events leave the scheduler with the next ones (memory
        # stays bounded: at most one event's worth waits), not in a call of their own:
        # handle() per call was a fifth of a load-balanced task's client CPU.
        if self._forget:
            forgotten, self._forget = self._forget, []
            events = (*(TaskForgotten(task_id=t, stimulus_id=t) for t in forgotten), *events)
        self._execute(self.state.handle(*events))

    def _execute(self, instructions: list[Instruction]) -> None:
        for instruction in instructions:
            match instruction:
                case SendTask(task_id=task_id, engine=engine):
                    # The task id travels in the metadata: the controller's records find
                    # a load-balanced result by it (rc.get_result(ar.msg_ids[0])).
                    msg_id = self._client.send_request(
                        engine, "apply_request", {}, self._buffers[task_id], {"task_id": task_id}
                    )
                    self._attempts[msg_id] = task_id
                case AbortOnEngine(task_id=task_id, engine=engine):
                    attempts = [m for m, t in self._attempts.items() if t == task_id]
                    self._client.abort_on_engine(engine, attempts)
                case ReplyToClient(task_id=task_id):
                    self._settle(task_id)
                case FailTask(task_id=task_id, kind=kind, reason=reason):
                    self._values.pop(task_id, None)
                    error = self._errors.get(task_id) or _scheduler_error(kind, reason)
                    self._settle(task_id, error)

    def _settle(self, task_id: str, error: RemoteError | None = None) -> None:
        self._forget.append(task_id)
        engine, value = self._values.pop(task_id, (None, None))
        error = error if error is not None else self._errors.get(task_id)
        self._buffers.pop(task_id, None)
        self._errors.pop(task_id, None)
        if task_id not in self._client._results:
            self._early[task_id] = (engine, value, error)
            return
        self._deliver(task_id, engine, value, error)

    def _deliver(
        self, task_id: str, engine: int | None, value: object, error: RemoteError | None
    ) -> None:
        result = self._client._results.pop(task_id)
        if result is not None:
            result._finish(task_id, -1 if engine is None else engine, value, error)


def _scheduler_error(kind: str, reason: str) -> RemoteError:
    if kind == "engine-died":
        return EngineError(reason)
    return RemoteError(f"Task{kind.title().replace('-', '')}", reason)
