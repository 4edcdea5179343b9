"""SchedulerState under random event streams: invariants hold, every task is answered once."""

from __future__ import annotations

from collections import Counter
from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from parallel import SchedulerError
from parallel.scheduler import (
    SCHEMES,
    EngineLost,
    EngineRegistered,
    FailTask,
    ForgetEngine,
    Instruction,
    ReplyToClient,
    SchedulerEvent,
    SchedulerState,
    SendTask,
    TaskAbortRequested,
    TaskFinished,
    TaskState,
    TaskStatus,
    TaskSubmitted,
    Tick,
)

FINAL = (TaskState.DONE, TaskState.FAILED)
#: Engine labels and resources drawn from small sets, so tasks fit some engines, not all.
LABELS = st.sampled_from(["bigmem", "x"])
RESOURCES = st.sampled_from(["gpu", "mem"])


class _World:
    """What a driver would know: which engines exist and where each task was sent."""

    def __init__(self, state: SchedulerState) -> None:
        self.state = state
        self.live: set[int] = set()
        self.lost: set[int] = set()
        self.tasks: list[str] = []
        self.where: dict[str, int] = {}
        self.answers: Counter[str] = Counter()
        self.now = 0.0
        #: Each engine's labels and resources as it last registered; each task's submission.
        self.traits: dict[int, tuple[frozenset[str], dict[str, float]]] = {}
        self.specs: dict[str, TaskSubmitted] = {}

    def apply(self, instructions: list[Instruction]) -> None:
        for instruction in instructions:
            match instruction:
                case SendTask(task_id=task, engine=engine):
                    assert engine in self.live
                    self.where[task] = engine
                    self.check_fit(task, engine)
                case ReplyToClient(task_id=task) | FailTask(task_id=task):
                    self.answers[task] += 1
                    self.where.pop(task, None)
                case ForgetEngine(engine=engine):
                    self.where = {t: e for t, e in self.where.items() if e != engine}

    def check_fit(self, task: str, engine: int) -> None:
        """A task is sent only where its labels are, and its resources free."""
        labels, totals = self.traits[engine]
        spec = self.specs[task]
        assert spec.labels <= labels, (task, engine)
        if spec.direct:
            return
        for name in spec.resources:
            held = [self.specs[t] for t, e in self.where.items() if e == engine]
            used = sum(s.resources.get(name, 0.0) for s in held if not s.direct)
            assert used <= totals.get(name, 0.0) + 1e-9, (task, engine, name)


def _event(world: _World, data: st.DataObject, step: int) -> SchedulerEvent | None:
    sid = f"s{step}"
    action = data.draw(st.sampled_from(["register", "lose", "submit", "finish", "abort", "tick"]))
    if action == "register":
        engine = data.draw(st.sampled_from([len(world.live | world.lost), *sorted(world.lost)]))
        world.lost.discard(engine)
        world.live.add(engine)
        labels = data.draw(st.frozensets(LABELS, max_size=2))
        resources = data.draw(st.dictionaries(RESOURCES, st.sampled_from([0.5, 1.0, 2.0])))
        world.traits[engine] = (labels, resources)
        return EngineRegistered(engine=engine, labels=labels, resources=resources, stimulus_id=sid)
    if action == "lose" and world.live:
        engine = data.draw(st.sampled_from(sorted(world.live)))
        world.live.remove(engine)
        world.lost.add(engine)
        return EngineLost(engine=engine, reason="test", stimulus_id=sid)
    if action == "submit":
        submission = _submission(world, data, sid)
        world.specs[submission.task_id] = submission
        return submission
    if action == "finish" and world.where:
        task = data.draw(st.sampled_from(sorted(world.where)))
        statuses: list[TaskStatus] = ["ok", "error", "aborted"]
        status = data.draw(st.sampled_from(statuses))
        engine = world.where.pop(task)  # it replied: the engine no longer holds it
        return TaskFinished(task_id=task, engine=engine, status=status, stimulus_id=sid)
    if action == "abort" and world.tasks:
        return TaskAbortRequested(task_id=data.draw(st.sampled_from(world.tasks)), stimulus_id=sid)
    if action == "tick":
        world.now += data.draw(st.floats(0, 5))
        return Tick(now=world.now, stimulus_id=sid)
    return None


def _submission(world: _World, data: st.DataObject, sid: str) -> TaskSubmitted:
    task = f"t{len(world.tasks)}"
    world.tasks.append(task)
    engines = st.integers(0, len(world.live | world.lost) + 1)
    targets = data.draw(st.none() | st.frozensets(engines, min_size=1, max_size=3))
    after = data.draw(st.frozensets(st.sampled_from([*world.tasks[:-1], "ghost"]), max_size=2))
    return TaskSubmitted(
        task_id=task,
        targets=targets,
        direct=targets is not None and len(targets) == 1 and data.draw(st.booleans()),
        after=after,
        retries=data.draw(st.integers(0, 2)),
        retry_on=data.draw(st.sampled_from(["any", "engine-death"])),
        deadline=data.draw(st.none() | st.floats(0, 20)),
        max_engine_deaths=data.draw(st.none() | st.integers(1, 3)),
        labels=data.draw(st.frozensets(LABELS, max_size=1)),
        resources=data.draw(st.dictionaries(RESOURCES, st.sampled_from([0.0, 0.5, 1.0]))),
        stimulus_id=sid,
    )


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_event_streams_keep_the_invariants_and_answer_every_task_once(
    data: st.DataObject,
) -> None:
    hwm = data.draw(st.integers(0, 2))
    state = SchedulerState(
        rng=Random(data.draw(st.integers(0, 99))),
        scheme=data.draw(st.sampled_from(list(SCHEMES.values()))),
        hwm=hwm,
        poison_after=data.draw(st.integers(1, 3)),
        orphan_grace=data.draw(st.sampled_from([0.0, 3.0])),
        # engines that answer 0.1 or 1 task a second (ticks are 0-5 s apart) go deep
        deep_hwm=hwm + data.draw(st.integers(0, 2)) if hwm else 0,
        fast_rate=data.draw(st.sampled_from([0.1, 1.0])),
    )
    world = _World(state)
    for step in range(data.draw(st.integers(1, 60))):
        event = _event(world, data, step)
        if event is None:
            continue
        try:
            world.apply(state.handle(event))
        except SchedulerError:
            # the only refusal a well-behaved driver meets: aborting a finished task
            assert isinstance(event, TaskAbortRequested)
            assert state.state_of(event.task_id) in FINAL
        state.validate()
        _assert_no_ready_task_could_be_sent(state)
    for task in world.tasks:
        assert world.answers[task] == (1 if state.state_of(task) in FINAL else 0), task
        assert (task in world.where) == (state.state_of(task) is TaskState.ASSIGNED), task


def _assert_no_ready_task_could_be_sent(state: SchedulerState) -> None:
    """After every event the scheduler has sent whatever it could: no READY task has an
    engine to go to (its skipping of tasks known not to fit, ``_next_placement``, never
    skips one that does)."""
    if not state._engines.has_room():
        return
    for task in state._tasks.in_state(TaskState.READY):
        assert state._choose(task) is None, task.task_id
