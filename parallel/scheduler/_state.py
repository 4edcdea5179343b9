"""The task scheduler as a pure state machine: events in, instructions out.

Theory of operation
-------------------
A driver feeds facts (:mod:`._events`) to :meth:`SchedulerState.handle` and
carries out the instructions it returns. The state is mutated **only through
``handle``**; there are no clocks (time arrives as ``Tick``), no randomness but
the injected ``random.Random``, no I/O. Every task is in exactly one state::

    WAITING --deps-met--> READY --send--> ASSIGNED --finished-ok-----> DONE
       |                    |  ^             |  \\---finished-failed--> FAILED
       |                    |  \\---retry-----/  \\---engine-died------> FAILED
       \\--dependency-failed, unsatisfiable, abort, timeout--> FAILED

:data:`._task_book.TRANSITIONS` is that picture as a table. A stimulus it has no
entry for raises :class:`SchedulerError` and changes nothing: it is never
silently ignored. The one exception is a *stale* reply, a ``TaskFinished``
from an engine lost while it held the task (since re-run or failed): it is
counted in ``stale`` and dropped.

Rules:

* A task enters WAITING. It fails at once as ``unsatisfiable`` if ``after``
  names a task never submitted, or if it cannot run anywhere: none of its
  ``targets`` is live, or (``targets=None``) engines have registered and all
  are lost, or if no live engine it may run on carries its ``labels`` and has
  its ``resources`` in all (``_fit``; the reason names what was asked and what
  the live engines have). A ``targets=None`` task submitted before the first
  engine ever registered waits: engines may still be starting (a ``deadline``
  bounds that).
  It fails as ``dependency-failed`` when a task in ``after`` ends in FAILED
  (ipyparallel's default ``success=True, failure=False``), and goes READY once
  all of them are DONE.
* A ``direct`` task is sent to its engine the moment it is READY, whatever
  ``hwm`` says (the engine queues it); it still counts towards that engine's
  load. After every event, the other READY tasks are offered to engines in the
  order they became READY (a retried task joins the back of the line), until
  no engine has room. A task may go to the live engines in its ``targets``
  (any, if ``None``), preferring those that have not already failed it, and
  skipping those that hold as many tasks as their depth (``hwm``; ``hwm=0``: no
  limit) and those without its ``resources`` free (load-balanced tasks hold their
  resources while ASSIGNED); if none is left it stays READY. With several candidates,
  listed least recently used first, the scheme picks one (:mod:`._schemes`);
  with one, the scheme is not asked and ``rng`` is not drawn from.
* An ``error`` reply with retries left and ``retry_on="any"`` sends the task
  back to READY (to run on another engine if there is one); otherwise the
  reply is relayed and the task ends.
* When an engine is lost, every task on it is re-run if it has retries left,
  was not being aborted, has not killed ``max_engine_deaths`` engines (its
  own, else ``poison_after``; every death counts, an engine replaced under
  the same id too) and still has an engine it may run on; otherwise it fails
  as ``engine-died`` (reason ``"task killed 3 engines (0, 1, 3): ..."`` for a
  poison task). With ``orphan_grace`` > 0, a load-balanced task that asked for
  retries does not fail for want of an engine: it waits READY (an *orphan*)
  for one to register (a replacement), and fails as ``unsatisfiable`` only at
  a ``Tick`` ``orphan_grace`` seconds after the first ``Tick`` that saw it
  waiting. Other WAITING and
  READY tasks left with no engine fail as ``unsatisfiable``.
* An abort fails a WAITING/READY task as ``aborted``; for an ASSIGNED task it
  asks the engine (``AbortOnEngine``) and disables retries.
* A ``Tick`` fails WAITING/READY tasks whose ``deadline`` has passed (``timeout``).
* Depth: with ``deep_hwm`` > ``hwm``, an engine that answered at least ``fast_rate``
  tasks a second over the ``Tick``s of the last ``PACE_WINDOW`` seconds or more is
  *fast* and may hold ``deep_hwm`` tasks, until a window in which it answered fewer
  (``_pool`` module docstring: a deep queue costs less per task but holds tasks behind
  a slow one, so it is kept for short tasks). A task with a ``deadline`` is only ever
  offered engines holding fewer than ``hwm``: its deadline is for being *sent*, and
  that keeps it meaning what it did (the task is not left queued on an engine).
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from .._errors import SchedulerError
from ._events import (
    AbortOnEngine,
    EngineId,
    EngineLost,
    EngineRegistered,
    FailTask,
    ForgetEngine,
    Instruction,
    ReplyToClient,
    SchedulerEvent,
    SendTask,
    TaskAbortRequested,
    TaskFinished,
    TaskForgotten,
    TaskSubmitted,
    Tick,
)
from ._fit import EngineTraits, can_hold, describe_misfit, has_free, in_use
from ._pool import EnginePool
from ._schemes import Scheme, leastload
from ._task_book import FAILURE_KINDS, TaskBook, TaskRecord, TaskState, Trigger

__all__ = ["FAST_RATE", "PACE_WINDOW", "SchedulerState"]

_W, _R, _A = TaskState.WAITING, TaskState.READY, TaskState.ASSIGNED
_D, _F = TaskState.DONE, TaskState.FAILED

#: Replies a second from which an engine is fast and gets the deep queue (module
#: docstring, depth): its tasks take 20 ms or less, so the ``deep_hwm - 1`` tasks queued
#: behind one had been waiting ~0.15 s or less for their turn. Not higher: on a loaded
#: 2-core machine trivial tasks came at ~60 a second per engine (load ~28), and a 100
#: kept them from the deep queue where it saves the most.
FAST_RATE = 50.0
#: The shortest time over which a rate is judged (seconds): a client ticks every 50 ms
#: while it waits, and a shorter window counts too few replies to judge by.
PACE_WINDOW = 0.05


#: What decides where a READY task may go (``_placement_key``).
_PlacementKey = tuple[
    frozenset[EngineId] | None, frozenset[str], tuple[tuple[str, float], ...], bool
]


def _placement_key(task: TaskRecord) -> _PlacementKey | None:
    """Its targets, labels, resources and whether it has no deadline (a deadline keeps it
    off deep queues): tasks with equal keys fit the same engines now;
    ``None`` for a task that avoids the engines it failed on (its answer is its own)."""
    if task.failed_on:
        return None
    key = task.placement_key
    if key is None:
        spec = task.spec
        resources = tuple(sorted(spec.resources.items()))
        key = task.placement_key = (spec.targets, spec.labels, resources, spec.deadline is None)
    return key  # type: ignore[return-value]  # made here, of that type


def _loss(reason: str) -> tuple[str, str]:
    """How an engine was lost, split for a sentence: ``("died", ": killed by signal 9
    ...")`` for the hub's ``"died: ..."``, else ``("was lost", ": REASON")``, so the cause
    reads once: "engine 1 died while running task 'x': killed by signal 9 (SIGKILL)"."""
    if reason == "died":
        return "died", ""
    if reason.startswith("died: "):
        return "died", reason[len("died") :]
    return "was lost", f": {reason}" if reason else ""


class SchedulerState:
    """Decides where tasks run. Pure: mutate only through :meth:`handle`."""

    def __init__(
        self,
        *,
        rng: random.Random,
        scheme: Scheme = leastload,
        hwm: int = 0,
        poison_after: int = 3,
        log_size: int = 10_000,
        orphan_grace: float = 0.0,
        deep_hwm: int | None = None,
        fast_rate: float = FAST_RATE,
    ) -> None:
        if hwm < 0 or poison_after < 1 or orphan_grace < 0 or fast_rate <= 0:
            raise ValueError(
                "hwm must be >= 0, poison_after >= 1, orphan_grace >= 0 and fast_rate > 0"
            )
        #: Replies a second from which an engine is fast (module docstring, depth).
        self.fast_rate = fast_rate
        #: The ``Tick`` time the current pace window began (``None``: no tick yet).
        self._paced_at: float | None = None
        #: Unfinished tasks with a deadline, in submission order (the ``Tick`` checks
        #: these, not every READY task: a map's thousands have none). Cleaned at ticks.
        self._deadlined: dict[str, None] = {}
        #: Seconds a task with retries waits for an engine when none it may run on is live
        #: (every engine lost, replacements on their way); 0: it fails at once.
        self.orphan_grace = orphan_grace
        #: Tasks waiting for an engine to come back -> the ``Tick`` time they were first
        #: seen waiting (``None``: no tick yet). Cleaned lazily at ticks.
        self._orphans: dict[str, float | None] = {}
        #: The only source of randomness, handed to ``scheme``.
        self.rng = rng
        #: Picks one of several candidate engines (``parallel.scheduler._schemes``).
        self.scheme = scheme
        #: A task that was on this many engines when they died fails instead of retrying.
        self.poison_after = poison_after
        #: The last ``log_size`` events handled (rejected ones too), oldest first.
        self.stimulus_log: deque[SchedulerEvent] = deque(maxlen=log_size)
        #: How many stale ``TaskFinished`` events were dropped (module docstring).
        self.stale = 0
        #: Every task ever submitted, filed by state.
        self._tasks = TaskBook()
        #: Live engines, their loads and least-recently-used order.
        self._engines = EnginePool(hwm, deep_hwm)
        #: Each engine's labels and resources, as it last registered (``_fit``).
        self._traits: dict[EngineId, EngineTraits] = {}
        #: Placement keys that found no engine, valid while the pool's version is
        #: ``_blocked_at`` (``_next_placement``).
        self._blocked: set[_PlacementKey] = set()
        self._blocked_at = -1
        #: How many READY tasks, from the front, ``_next_placement`` found no engine for
        #: at ``_blocked_at``, and the last of them.
        self._scanned: tuple[int, TaskRecord | None] = (0, None)

    # -- public surface ---------------------------------------------------------

    @property
    def hwm(self) -> int:
        """Most tasks a load-balanced task may find on its engine; 0 means no limit."""
        return self._engines.hwm

    def handle(self, *events: SchedulerEvent) -> list[Instruction]:
        """Apply ``events`` in order and return the instructions they call for.

        Raises :class:`SchedulerError` for an event the tables do not allow; that
        event changed nothing, and the error's ``applied`` holds the instructions
        of the events before it, which were applied.
        """
        out: list[Instruction] = []
        for event in events:
            self.stimulus_log.append(event)
            done = len(out)
            try:
                self._handle(event, out)
            except SchedulerError as exc:
                exc.applied = tuple(out[:done])
                raise
        return out

    def state_of(self, task_id: str) -> TaskState:
        """The state of a submitted task; :class:`SchedulerError` if it is unknown."""
        state = self._tasks.get(task_id).state
        assert state is not None  # filed by TaskBook.add
        return state

    def load(self, engine: EngineId) -> int:
        """How many tasks live ``engine`` holds; :class:`SchedulerError` if it is not live."""
        return self._engines.load(engine)

    def depth(self, engine: EngineId) -> int:
        """How many tasks live ``engine`` may hold now (module docstring, depth)."""
        self._engines.load(engine)  # SchedulerError if it is not live
        return self._engines.depth(engine)

    @property
    def live_engines(self) -> frozenset[EngineId]:
        """The engines that may be given tasks now."""
        return frozenset(self._engines)

    def validate(self) -> None:
        """Check the invariants; raise :class:`SchedulerError` naming the first broken one.

        Each task is in exactly one state; WAITING tasks wait on unfinished tasks
        and READY ones on none; a task is ASSIGNED exactly when a live engine
        holds it, and each engine's load counts exactly the tasks it holds; a
        DONE or FAILED task was answered exactly once, any other task never.
        """
        self._tasks.validate()
        held = {
            task_id: engine for engine in self._engines for task_id in self._engines.held(engine)
        }
        for task in self._tasks.records():
            if (task.state is _A) != (task.task_id in held) or held.get(
                task.task_id
            ) != task.engine:
                raise SchedulerError(f"task {task.task_id!r} is {task.state} on {task.engine}")
        if len(held) != sum(self._engines.load(engine) for engine in self._engines):
            raise SchedulerError("a task is counted on two engines")
        self._engines.validate()
        self._validate_resources()
        self._validate_answers()

    def _validate_answers(self) -> None:
        """Every finished task has exactly one answer; an unfinished one has none."""
        for task in self._tasks.records():
            expected = 1 if task.state in (_D, _F) else 0
            if task.answers != expected:
                raise SchedulerError(
                    f"{task.state} task {task.task_id!r} was answered {task.answers} times"
                )

    # -- events ---------------------------------------------------------------------

    def _handle(self, event: SchedulerEvent, out: list[Instruction]) -> None:
        # By the event's class in one dict lookup: a ``match`` tried the classes in turn,
        # and a map's events are mostly the later ones (submitted, finished, forgotten).
        handler = _HANDLERS.get(type(event))
        if handler is None:  # a subclass of an event, or no event of ours
            kind = next((k for k in _HANDLERS if isinstance(event, k)), None)
            if kind is None:
                raise SchedulerError(f"the scheduler does not handle {type(event).__name__}")
            handler = _HANDLERS[kind]
        handler(self, event, out)
        self._send_ready(event.stimulus_id, out)

    def _on_registered(self, event: EngineRegistered, out: list[Instruction]) -> None:
        self._engines.add(event.engine)
        self._traits[event.engine] = EngineTraits(event.labels, dict(event.resources))

    def _on_forgotten(self, event: TaskForgotten, out: list[Instruction]) -> None:
        self._tasks.forget(self._tasks.get(event.task_id))

    def _on_lost(self, event: EngineLost, out: list[Instruction]) -> None:
        held = self._engines.remove(event.engine)
        out.append(ForgetEngine(engine=event.engine, stimulus_id=event.stimulus_id))
        for task_id in held:
            self._strand(self._tasks.get(task_id), event, out)
        for task in self._tasks.in_state(_W, _R):
            reason = self._hopeless(task)
            if reason is not None and task.state in (_W, _R):  # not failed by a dependency
                self._fail(task, "unsatisfiable", reason, event.stimulus_id, out)

    def _strand(self, task: TaskRecord, event: EngineLost, out: list[Instruction]) -> None:
        """``task`` was on ``event.engine`` when it was lost: re-run it or fail it."""
        task.engine = None
        task.killed.append(event.engine)
        how, why = _loss(event.reason)
        cause = f"engine {event.engine} {how} while running task {task.task_id!r}{why}"
        if task.abort_requested:
            reason: str | None = f"{cause} (it was being aborted)"
        elif len(task.killed) >= self._poison_limit(task):
            engines = ", ".join(map(str, task.killed))
            count = len(task.killed)
            last = f"engine {event.engine} {how}{why}"
            reason = f"task killed {count} engine{'s' * (count > 1)} ({engines}); {last}"
        elif task.retries_left == 0 or not (self._candidates(task) or self._may_wait(task)):
            reason = cause
        else:
            reason = None
        if reason is None:
            task.retries_left -= 1
            self._make_ready(task, "retry", event.stimulus_id, out)
        else:
            self._fail(task, "engine-died", reason, event.stimulus_id, out)

    def _on_submitted(self, event: TaskSubmitted, out: list[Instruction]) -> None:
        if event.direct and (event.targets is None or len(event.targets) != 1):
            raise SchedulerError(f"direct task {event.task_id!r} needs exactly one target")
        if event.retries < 0:
            raise SchedulerError(f"task {event.task_id!r} has negative retries")
        if event.max_engine_deaths is not None and event.max_engine_deaths < 1:
            raise SchedulerError(f"task {event.task_id!r} needs max_engine_deaths >= 1")
        sid = event.stimulus_id
        if not event.after:  # most tasks: nothing to look up
            task = self._tasks.add(event)
            if event.deadline is not None:
                self._deadlined[task.task_id] = None
            self._advance(task, sid, out)
            return
        # Looked up before it is filed: a task naming itself names an unknown task.
        unknown = sorted(d for d in event.after if d not in self._tasks)
        task = self._tasks.add(event)
        if event.deadline is not None:
            self._deadlined[task.task_id] = None
        if unknown:
            self._fail(task, "unsatisfiable", f"unknown dependency {unknown}", sid, out)
            return
        after = [self._tasks.get(d) for d in sorted(event.after)]
        failed = [d.task_id for d in after if d.state is _F]
        if failed:
            self._fail(task, "dependency-failed", f"dependency {failed[0]!r} failed", sid, out)
            return
        for dependency in after:
            if dependency.state is not _D:
                task.pending.add(dependency.task_id)
                dependency.dependents.append(task.task_id)
        self._advance(task, sid, out)

    def _on_finished(self, event: TaskFinished, out: list[Instruction]) -> None:
        task = self._tasks.get(event.task_id)
        if task.engine != event.engine:
            if event.engine in task.killed:
                self.stale += 1
                return
            state = task.state.value if task.state else "new"
            raise SchedulerError(f"task {task.task_id!r} is {state}, not on engine {event.engine}")
        self._engines.release(event.engine, task.task_id)
        task.engine = None
        if event.status == "error" and self._retries_errors(task):
            task.retries_left -= 1
            task.failed_on.add(event.engine)
            self._make_ready(task, "retry", event.stimulus_id, out)
            return
        self._tasks.move(task, "finished-ok" if event.status == "ok" else "finished-failed")
        task.answers += 1
        sid, status = event.stimulus_id, event.status
        out.append(
            ReplyToClient(task_id=task.task_id, engine=event.engine, status=status, stimulus_id=sid)
        )
        if event.status == "ok":
            self._release_dependents(task, sid, out)
        else:
            self._fail_dependents(task, sid, out)

    def _on_abort(self, event: TaskAbortRequested, out: list[Instruction]) -> None:
        task = self._tasks.get(event.task_id)
        sid = event.stimulus_id
        if task.engine is None:
            self._fail(task, "abort", "aborted before it was sent to an engine", sid, out)
            return
        self._tasks.move(task, "abort")
        task.abort_requested = True
        out.append(AbortOnEngine(task_id=task.task_id, engine=task.engine, stimulus_id=sid))

    def _on_tick(self, event: Tick, out: list[Instruction]) -> None:
        for task_id in list(self._deadlined):
            task = self._tasks.get(task_id) if task_id in self._tasks else None
            if task is None or task.state in (_D, _F):  # an ASSIGNED one may be retried
                del self._deadlined[task_id]
                continue
            deadline = task.spec.deadline
            assert deadline is not None  # only those are noted
            if deadline <= event.now and task.state in (_W, _R):
                reason = f"not sent to an engine by its deadline {deadline}"
                self._fail(task, "timeout", reason, event.stimulus_id, out)
                del self._deadlined[task_id]
        self._expire_orphans(event, out)
        self._pace(event.now)

    # -- depth: deep queues for engines that run short tasks -------------------------

    @property
    def paces(self) -> bool:
        """Whether engines may be given deep queues (the driver should ``Tick`` then)."""
        return self._engines.deep_hwm != self._engines.hwm

    def _pace(self, now: float) -> None:
        """At a ``Tick`` that ends a pace window: each engine is fast or not by the replies
        it sent during the window (module docstring, depth)."""
        if not self.paces:
            return
        if self._paced_at is None or now < self._paced_at:
            self._paced_at = now
            for engine in self._engines:
                self._engines.take_answered(engine)
            return
        elapsed = now - self._paced_at
        if elapsed < PACE_WINDOW:
            return
        self._paced_at = now
        for engine in self._engines:
            rate = self._engines.take_answered(engine) / elapsed
            self._engines.set_fast(engine, rate >= self.fast_rate)

    # -- tasks waiting for an engine to come back --------------------------------------

    @property
    def waiting_for_engines(self) -> bool:
        """Whether tasks wait for an engine to come back (the driver should ``Tick``)."""
        return bool(self._orphans)

    def _may_wait(self, task: TaskRecord) -> bool:
        """Whether ``task`` waits for an engine rather than failing when none is live: it
        asked for retries (it expects failures) and load-balancing may pick its engine."""
        return self.orphan_grace > 0 and task.spec.retries > 0 and not task.spec.direct

    def _hopeless(self, task: TaskRecord) -> str | None:
        """:meth:`_unsatisfiable`, except that a task that may wait for a lost engine to be
        replaced (``orphan_grace``) is not hopeless yet: it is noted as an orphan."""
        reason = self._unsatisfiable(task)
        if reason is None or not self._may_wait(task) or self._misfit(task) is not None:
            return reason
        self._orphans.setdefault(task.task_id, None)
        return None

    def _expire_orphans(self, event: Tick, out: list[Instruction]) -> None:
        """Fail orphans that waited ``orphan_grace`` seconds; forget those that moved on."""
        for task_id, since in list(self._orphans.items()):
            task = self._tasks.get(task_id) if task_id in self._tasks else None
            if task is None or task.state not in (_W, _R) or self._candidates(task):
                del self._orphans[task_id]
            elif since is None:
                self._orphans[task_id] = event.now
            elif event.now - since >= self.orphan_grace:
                del self._orphans[task_id]
                reason = f"no engine it may run on came back within {self.orphan_grace:g} s"
                self._fail(task, "unsatisfiable", reason, event.stimulus_id, out)

    # -- decisions --------------------------------------------------------------------

    def _poison_limit(self, task: TaskRecord) -> int:
        """How many engine deaths make ``task`` poison (its own limit, or the scheduler's)."""
        limit = task.spec.max_engine_deaths
        return self.poison_after if limit is None else limit

    def _retries_errors(self, task: TaskRecord) -> bool:
        return task.retries_left > 0 and task.spec.retry_on == "any" and not task.abort_requested

    def _unsatisfiable(self, task: TaskRecord) -> str | None:
        """Why ``task`` can never run now, or ``None`` (module docstring, first rule)."""
        targets = task.spec.targets
        if targets is None:
            lost_all = self._engines.ever_had_engines and not self._engines
            if lost_all:
                return "every registered engine was lost"
        elif targets.isdisjoint(self._engines):
            return f"no live engine among targets {sorted(targets)}"
        return self._misfit(task)

    def _candidates(self, task: TaskRecord) -> list[EngineId]:
        spec = task.spec
        targets = spec.targets
        if targets is None and not (spec.labels or spec.resources):
            return list(self._engines)  # most load-balanced tasks: any live engine
        return [
            engine
            for engine in self._engines
            if (targets is None or engine in targets) and self._can_hold(engine, task)
        ]

    def _choose(self, task: TaskRecord) -> EngineId | None:
        """The engine ``task`` should go to now, or ``None`` to leave it READY."""
        candidates = self._candidates(task)
        pool = [e for e in candidates if e not in task.failed_on] or candidates
        if not task.spec.direct:
            pool = self._engines.with_room(pool, shallow=task.spec.deadline is not None)
            pool = self._with_free_resources(pool, task)
        if len(pool) <= 1:
            return pool[0] if pool else None
        pool = self._engines.least_recently_used(pool)
        index = self.scheme([self._engines.load(e) for e in pool], self.rng)
        if not 0 <= index < len(pool):
            raise SchedulerError(f"the scheme chose candidate {index} of {len(pool)}")
        return pool[index]

    # -- labels and resources (``_fit``) ---------------------------------------------------

    def _can_hold(self, engine: EngineId, task: TaskRecord) -> bool:
        """Whether live ``engine`` has ``task``'s labels, and its resources in all."""
        spec = task.spec
        return not (spec.labels or spec.resources) or can_hold(
            self._traits[engine], spec.labels, spec.resources
        )

    def _misfit(self, task: TaskRecord) -> str | None:
        """Why no live engine ``task`` may run on can ever hold it, or ``None``.

        ``None`` too while no engine is live (before the first registers, a task waits)."""
        spec = task.spec
        if not (spec.labels or spec.resources) or not self._engines:
            return None
        targets = spec.targets
        allowed = [e for e in self._engines if targets is None or e in targets]
        if any(self._can_hold(engine, task) for engine in allowed):
            return None
        traits = {engine: self._traits[engine] for engine in allowed}
        return describe_misfit(spec.labels, spec.resources, traits)

    def _resources_in_use(self, engine: EngineId) -> dict[str, float]:
        """What the load-balanced tasks ``engine`` holds consume there (direct ones: nothing)."""
        held = (self._tasks.get(t).spec for t in self._engines.held(engine))
        return in_use(spec.resources for spec in held if not spec.direct)

    def _with_free_resources(self, engines: list[EngineId], task: TaskRecord) -> list[EngineId]:
        """Those of ``engines`` with ``task``'s resources free now."""
        wanted = task.spec.resources
        if not wanted:
            return engines
        return [
            engine
            for engine in engines
            if has_free(self._traits[engine], self._resources_in_use(engine), wanted)
        ]

    def _validate_resources(self) -> None:
        """No engine's load-balanced tasks consume more of a resource than it has."""
        for engine in self._engines:
            traits = self._traits[engine]
            for name, amount in self._resources_in_use(engine).items():
                if not has_free(traits, {}, {name: amount}):
                    raise SchedulerError(f"engine {engine} has {name}={amount:g} in use, too much")

    def _next_placement(self) -> tuple[TaskRecord, EngineId] | None:
        # Tasks asking the same of the engines get the same answer: once one of them found
        # no engine, the others are skipped, until the engines change (thousands of gpu
        # tasks waiting for one gpu made every event cost a _choose per READY task).
        # And the tasks a scan found nowhere to go, the first ``count`` READY ones up to
        # ``last``, are skipped unlooked-at while they are still exactly those (a READY
        # task only joins the back of the line): a submission looks at itself alone.
        if self._blocked_at != self._engines.version:
            self._blocked.clear()
            self._blocked_at = self._engines.version
            self._scanned = (0, None)
        blocked = self._blocked
        count, last = self._scanned
        queue = self._tasks.queue(_R)
        if count and next(itertools.islice(self._tasks.queue(_R), count - 1, None), None) is not (
            last
        ):
            count = 0  # a READY task left the line: look at them all again
        scanned, task = count, last
        for task in itertools.islice(queue, count, None):
            key = _placement_key(task)
            if key is None or key not in blocked:
                engine = self._choose(task)
                if engine is not None:
                    return task, engine
                if key is not None:
                    blocked.add(key)
            scanned += 1
        self._scanned = (scanned, task)
        return None

    def _send_ready(self, sid: str, out: list[Instruction]) -> None:
        """Place READY tasks, oldest READY first, until none fits or no engine has room."""
        while self._engines.has_room():
            placement = self._next_placement()
            if placement is None:
                return
            self._send(*placement, sid, out)

    def _send(self, task: TaskRecord, engine: EngineId, sid: str, out: list[Instruction]) -> None:
        self._tasks.move(task, "send")
        task.engine = engine
        self._engines.assign(engine, task.task_id)
        out.append(SendTask(task_id=task.task_id, engine=engine, stimulus_id=sid))

    # -- moving tasks -----------------------------------------------------------------

    def _advance(self, task: TaskRecord, sid: str, out: list[Instruction]) -> None:
        """A WAITING task whose dependencies changed: fail it, keep it, or make it READY."""
        reason = self._hopeless(task)
        if reason is not None:
            self._fail(task, "unsatisfiable", reason, sid, out)
        elif not task.pending:
            self._make_ready(task, "deps-met", sid, out)

    def _make_ready(
        self, task: TaskRecord, trigger: Trigger, sid: str, out: list[Instruction]
    ) -> None:
        """Move ``task`` to READY; a direct task goes on to its (live) engine at once."""
        self._tasks.move(task, trigger)
        if task.spec.direct:
            assert task.spec.targets is not None  # checked at submission
            (engine,) = task.spec.targets
            self._send(task, engine, sid, out)

    def _fail(
        self, task: TaskRecord, trigger: Trigger, reason: str, sid: str, out: list[Instruction]
    ) -> None:
        """Move ``task`` to FAILED by ``trigger``, tell the client, then fail its dependents."""
        self._tasks.move(task, trigger)
        kind = FAILURE_KINDS[trigger]
        task.answers += 1
        out.append(FailTask(task_id=task.task_id, kind=kind, reason=reason, stimulus_id=sid))
        self._fail_dependents(task, sid, out)

    def _fail_dependents(self, task: TaskRecord, sid: str, out: list[Instruction]) -> None:
        """Fail every WAITING task that (transitively) waits on FAILED ``task``, breadth first."""
        queue = deque([task])
        while queue:
            failed = queue.popleft()
            for dependent in map(self._tasks.get, failed.dependents):
                if dependent.state is not _W:
                    continue
                self._tasks.move(dependent, "dependency-failed")
                dependent.answers += 1
                reason = f"dependency {failed.task_id!r} failed"
                kind = FAILURE_KINDS["dependency-failed"]
                out.append(
                    FailTask(task_id=dependent.task_id, kind=kind, reason=reason, stimulus_id=sid)
                )
                queue.append(dependent)

    def _release_dependents(self, task: TaskRecord, sid: str, out: list[Instruction]) -> None:
        """``task`` is DONE: each WAITING dependent has one dependency fewer to wait for."""
        for dependent in map(self._tasks.get, task.dependents):
            if dependent.state is _W:
                dependent.pending.discard(task.task_id)
                self._advance(dependent, sid, out)


#: What ``SchedulerState._handle`` calls for each kind of event.
_HANDLERS: dict[type[SchedulerEvent], Callable[[SchedulerState, Any, list[Instruction]], None]] = {
    TaskSubmitted: SchedulerState._on_submitted,
    TaskFinished: SchedulerState._on_finished,
    TaskForgotten: SchedulerState._on_forgotten,
    EngineRegistered: SchedulerState._on_registered,
    EngineLost: SchedulerState._on_lost,
    TaskAbortRequested: SchedulerState._on_abort,
    Tick: SchedulerState._on_tick,
}
