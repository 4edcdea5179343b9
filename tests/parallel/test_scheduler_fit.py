"""SchedulerState with engine labels and resources: exact instruction lists, validate() after
every step (``parallel.scheduler._fit``)."""

from __future__ import annotations

from random import Random

from parallel.scheduler import (
    EngineLost,
    EngineRegistered,
    FailTask,
    ForgetEngine,
    Instruction,
    ReplyToClient,
    SchedulerEvent,
    SchedulerState,
    SendTask,
    TaskFinished,
    TaskState,
    TaskSubmitted,
)

GIB = float(1 << 30)


def _state(hwm: int = 0) -> SchedulerState:
    return SchedulerState(rng=Random(0), hwm=hwm)


def _handle(state: SchedulerState, *events: SchedulerEvent) -> list[Instruction]:
    instructions = state.handle(*events)
    state.validate()
    return instructions


def _engine(engine: int, *labels: str, **resources: float) -> EngineRegistered:
    return EngineRegistered(
        engine=engine, labels=frozenset(labels), resources=resources, stimulus_id=f"r{engine}"
    )


def _submit(
    task_id: str,
    *labels: str,
    targets: set[int] | None = None,
    direct: bool = False,
    retries: int = 0,
    **resources: float,
) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id,
        targets=None if targets is None else frozenset(targets),
        direct=direct,
        retries=retries,
        labels=frozenset(labels),
        resources=resources,
        stimulus_id=f"m-{task_id}",
    )


def _send(task_id: str, engine: int, sid: str | None = None) -> SendTask:
    return SendTask(task_id=task_id, engine=engine, stimulus_id=sid or f"m-{task_id}")


def _finished(task_id: str, engine: int, status: str = "ok") -> TaskFinished:
    return TaskFinished(task_id=task_id, engine=engine, status=status, stimulus_id=f"f-{task_id}")  # type: ignore[arg-type]


def _reply(task_id: str, engine: int) -> ReplyToClient:
    return ReplyToClient(task_id=task_id, engine=engine, status="ok", stimulus_id=f"f-{task_id}")


def test_a_labelled_task_goes_only_to_engines_carrying_every_label() -> None:
    state = _state()
    _handle(state, _engine(0), _engine(1, "bigmem"), _engine(2, "bigmem", "x"))
    assert _handle(state, _submit("a", "bigmem", "x")) == [_send("a", 2)]
    assert _handle(state, _submit("b", "bigmem")) == [_send("b", 1)]
    assert _handle(state, _submit("c")) == [_send("c", 0)]


def test_a_resource_is_consumed_while_its_task_is_assigned() -> None:
    # dask's semantics: an engine with gpu=1 holds one gpu=1 task at a time; the second
    # waits READY (not on the engine's queue) until the first is answered.
    state = _state()
    _handle(state, _engine(0), _engine(1, gpu=1))
    assert _handle(state, _submit("a", gpu=1), _submit("b", gpu=1)) == [_send("a", 1)]
    assert state.state_of("b") is TaskState.READY
    assert _handle(state, _submit("c")) == [_send("c", 0)]  # no resources: not held up
    assert _handle(state, _finished("a", 1)) == [_reply("a", 1), _send("b", 1, "f-a")]


def test_amounts_add_up_to_an_engines_total() -> None:
    state = _state()
    _handle(state, _engine(0, gpu=2, mem=64 * GIB))
    events = [_submit("a", gpu=1, mem=16 * GIB), _submit("b", gpu=1), _submit("c", gpu=1)]
    assert _handle(state, *events) == [_send("a", 0), _send("b", 0)]
    assert _handle(state, _submit("d", mem=48 * GIB), _submit("e", mem=1)) == [_send("d", 0)]
    assert _handle(state, _finished("b", 0)) == [_reply("b", 0), _send("c", 0, "f-b")]
    assert _handle(state, _finished("a", 0)) == [_reply("a", 0), _send("e", 0, "f-a")]


def test_a_task_no_live_engine_can_hold_fails_at_once_naming_what_was_asked_and_exists() -> None:
    state = _state()
    _handle(state, _engine(0), _engine(1), _engine(2, "bigmem", gpu=1, mem=64 * GIB))
    assert _handle(state, _submit("a", "bigmem", gpu=2)) == [
        FailTask(
            task_id="a",
            kind="unsatisfiable",
            reason="no live engine has labels ['bigmem'] and resources gpu=2 (engines 0, 1:"
            " labels [], resources none; engine 2: labels ['bigmem'], resources gpu=1,mem=64G)",
            stimulus_id="m-a",
        )
    ]
    assert _handle(state, _submit("b", "gpu")) == [
        FailTask(
            task_id="b",
            kind="unsatisfiable",
            reason="no live engine has labels ['gpu'] (engines 0, 1: labels [], resources"
            " none; engine 2: labels ['bigmem'], resources gpu=1,mem=64G)",
            stimulus_id="m-b",
        )
    ]


def test_targets_narrow_the_engines_that_may_hold_it() -> None:
    state = _state()
    _handle(state, _engine(0, gpu=1), _engine(1))
    [fail] = _handle(state, _submit("a", targets={1}, gpu=1))
    assert isinstance(fail, FailTask)
    assert fail.kind == "unsatisfiable"
    assert fail.reason.startswith("no live engine has resources gpu=1 (engine 1:")
    assert _handle(state, _submit("b", targets={0, 1}, gpu=1)) == [_send("b", 0)]


def test_before_any_engine_registered_a_constrained_task_waits_for_one_that_fits() -> None:
    state = _state()
    assert _handle(state, _submit("a", "gpu")) == []
    assert _handle(state, _engine(0, "gpu")) == [_send("a", 0, "r0")]


def test_an_engine_that_joins_later_gets_the_ready_tasks_it_can_hold() -> None:
    # A task waiting for resources in use (READY) goes to an engine that joins with them.
    state = _state()
    _handle(state, _engine(0, gpu=1))
    _handle(state, _submit("a", gpu=1), _submit("b", gpu=1))
    assert _handle(state, _engine(1, gpu=1)) == [_send("b", 1, "r1")]


def test_losing_the_only_engine_that_fits_fails_the_tasks_waiting_for_it() -> None:
    state = _state()
    _handle(state, _engine(0), _engine(1, gpu=1))
    _handle(state, _submit("a", gpu=1, retries=2), _submit("b", gpu=1))
    lost = EngineLost(engine=1, reason="killed by signal 9", stimulus_id="x1")
    out = _handle(state, lost)
    assert out[0] == ForgetEngine(engine=1, stimulus_id="x1")
    assert [(i.task_id, i.kind) for i in out[1:] if isinstance(i, FailTask)] == [
        ("a", "engine-died"),  # retries left, but no engine can hold it: not re-run
        ("b", "unsatisfiable"),
    ]
    assert isinstance(out[2], FailTask)
    assert out[2].reason.startswith("no live engine has resources gpu=1 (engine 0:")


def test_a_retry_goes_to_another_engine_that_fits() -> None:
    state = _state()
    _handle(state, _engine(0), _engine(1, "gpu"), _engine(2, "gpu"))
    assert _handle(state, _submit("a", "gpu", retries=1)) == [_send("a", 1)]
    assert _handle(state, _finished("a", 1, "error")) == [_send("a", 2, "f-a")]


def test_direct_tasks_are_sent_whatever_is_free_and_hold_nothing() -> None:
    state = _state()
    _handle(state, _engine(0, gpu=1))
    assert _handle(state, _submit("a", gpu=1)) == [_send("a", 0)]
    assert _handle(state, _submit("d", targets={0}, direct=True)) == [_send("d", 0)]
    assert _handle(state, _submit("b", gpu=1)) == []
    assert _handle(state, _finished("a", 0)) == [_reply("a", 0), _send("b", 0, "f-a")]


def test_a_zero_amount_asks_for_nothing_and_hwm_still_applies() -> None:
    state = _state(hwm=1)
    _handle(state, _engine(0))
    assert _handle(state, _submit("a", gpu=0), _submit("b")) == [_send("a", 0)]
