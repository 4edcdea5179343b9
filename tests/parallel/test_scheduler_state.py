"""SchedulerState: exact instruction lists, with validate() after every step."""

from __future__ import annotations

from random import Random

import pytest

from parallel import SchedulerError
from parallel.scheduler import (
    TRANSITIONS,
    AbortOnEngine,
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
    TaskSubmitted,
    Tick,
    lru,
    plainrandom,
)
from parallel.scheduler._state import PACE_WINDOW


def _state(**options: object) -> SchedulerState:
    return SchedulerState(rng=Random(0), **options)  # type: ignore[arg-type]


def _handle(state: SchedulerState, *events: SchedulerEvent) -> list[Instruction]:
    instructions = state.handle(*events)
    state.validate()
    return instructions


def _engines(state: SchedulerState, *engines: int) -> None:
    events = [EngineRegistered(engine=e, stimulus_id=f"r{e}") for e in engines]
    assert _handle(state, *events) == []


def _submit(task_id: str, targets: set[int] | None = None, **fields: object) -> TaskSubmitted:
    chosen = None if targets is None else frozenset(targets)
    return TaskSubmitted(task_id=task_id, targets=chosen, stimulus_id=f"m-{task_id}", **fields)  # type: ignore[arg-type]


def _finished(task_id: str, engine: int, status: str = "ok") -> TaskFinished:
    return TaskFinished(task_id=task_id, engine=engine, status=status, stimulus_id=f"f-{task_id}")  # type: ignore[arg-type]


def _lost(engine: int, reason: str = "died") -> EngineLost:
    return EngineLost(engine=engine, reason=reason, stimulus_id=f"x{engine}")


# -- load balancing ---------------------------------------------------------------------


def test_leastload_sends_the_task_to_the_idle_engine() -> None:
    state = _state()
    _engines(state, 0, 1)
    assert _handle(state, _submit("a")) == [SendTask(task_id="a", engine=0, stimulus_id="m-a")]
    assert _handle(state, _submit("b")) == [SendTask(task_id="b", engine=1, stimulus_id="m-b")]
    assert (state.load(0), state.load(1)) == (1, 1)


def test_a_load_balanced_task_submitted_before_any_engine_waits_for_the_first() -> None:
    state = _state()
    assert _handle(state, _submit("a")) == []
    assert state.state_of("a") is TaskState.READY
    assert _handle(state, EngineRegistered(engine=0, stimulus_id="r0")) == [
        SendTask(task_id="a", engine=0, stimulus_id="r0"),
    ]


def test_a_task_with_targets_goes_only_to_those_engines() -> None:
    state = _state()
    _engines(state, 0, 1, 2)
    assert _handle(state, _submit("a", {2})) == [SendTask(task_id="a", engine=2, stimulus_id="m-a")]
    assert _handle(state, _submit("b", {1, 2})) == [
        SendTask(task_id="b", engine=1, stimulus_id="m-b"),
    ]


def test_lru_sends_to_the_engine_that_was_sent_a_task_longest_ago() -> None:
    state = _state(scheme=lru)
    _engines(state, 0, 1, 2)
    sent = [_handle(state, _submit(t)) for t in "abcd"]
    assert [i[0].engine for i in sent if isinstance(i[0], SendTask)] == [0, 1, 2, 0]


def test_a_random_scheme_is_reproducible_with_a_seeded_rng() -> None:
    def run() -> list[Instruction]:
        state = _state(scheme=plainrandom)
        _engines(state, 0, 1, 2, 3)
        return [i for t in "abcdefgh" for i in _handle(state, _submit(t))]

    first = run()
    assert first == run()
    assert len({i.engine for i in first if isinstance(i, SendTask)}) > 1


def test_hwm_holds_tasks_ready_until_an_engine_frees_up() -> None:
    state = _state(hwm=1)
    _engines(state, 0, 1)
    assert _handle(state, _submit("a"), _submit("b"), _submit("c"), _submit("d")) == [
        SendTask(task_id="a", engine=0, stimulus_id="m-a"),
        SendTask(task_id="b", engine=1, stimulus_id="m-b"),
    ]
    assert state.state_of("c") is TaskState.READY
    assert _handle(state, _finished("b", 1)) == [
        ReplyToClient(task_id="b", engine=1, status="ok", stimulus_id="f-b"),
        SendTask(task_id="c", engine=1, stimulus_id="f-b"),
    ]
    assert _handle(state, EngineRegistered(engine=2, stimulus_id="r2")) == [
        SendTask(task_id="d", engine=2, stimulus_id="r2"),
    ]


def _sent(instructions: list[Instruction]) -> list[tuple[str, int]]:
    return [(i.task_id, i.engine) for i in instructions if isinstance(i, SendTask)]


def test_an_engine_that_answers_fast_gets_the_deep_queue_and_loses_it_when_slow() -> None:
    state = _state(hwm=1, deep_hwm=3, fast_rate=10.0)
    _engines(state, 0)
    assert state.paces
    assert _sent(_handle(state, *(_submit(t) for t in "abcdefgh"))) == [("a", 0)]
    _handle(state, Tick(now=0.0, stimulus_id="t0"))  # the first window starts
    _handle(state, _finished("a", 0))  # one reply in 0.2 s: 5 a second, slow
    assert _sent(_handle(state, Tick(now=0.2, stimulus_id="t1"))) == []
    assert state.load(0) == 1
    for task in "bc":  # two more in 0.1 s: 20 a second, fast
        _handle(state, _finished(task, 0))
    assert _sent(_handle(state, Tick(now=0.3, stimulus_id="t2"))) == [("e", 0), ("f", 0)]
    assert state.load(0) == 3
    # A window shorter than PACE_WINDOW judges nothing yet.
    assert _handle(state, Tick(now=0.3 + PACE_WINDOW / 2, stimulus_id="t3")) == []
    assert _sent(_handle(state, _finished("d", 0))) == [("g", 0)]  # still deep
    # Then slow (one reply in a second): no more sends until the queue drains below hwm.
    assert _sent(_handle(state, Tick(now=1.3, stimulus_id="t4"))) == []
    for task in "ef":
        assert _sent(_handle(state, _finished(task, 0))) == []
    assert _sent(_handle(state, _finished("g", 0))) == [("h", 0)]


def test_a_task_with_a_deadline_never_goes_deep_and_times_out_waiting() -> None:
    state = _state(hwm=1, deep_hwm=4, fast_rate=1.0)
    _engines(state, 0)
    _handle(state, _submit("a"), Tick(now=0.0, stimulus_id="t0"), _finished("a", 0))
    _handle(state, Tick(now=0.5, stimulus_id="t1"))  # 2 a second: fast
    assert _sent(_handle(state, _submit("b"))) == [("b", 0)]
    assert _sent(_handle(state, _submit("late", deadline=1.0))) == []  # 1 held: full for it
    assert _sent(_handle(state, _submit("c"))) == [("c", 0)]  # room below deep_hwm
    assert _handle(state, Tick(now=1.0, stimulus_id="t2")) == [
        FailTask(
            task_id="late",
            kind="timeout",
            reason="not sent to an engine by its deadline 1.0",
            stimulus_id="t2",
        )
    ]
    assert state.state_of("b") is TaskState.ASSIGNED


def test_a_direct_task_goes_to_its_engine_even_past_hwm() -> None:
    state = _state(hwm=1)
    _engines(state, 0)
    _handle(state, _submit("a"))
    assert _handle(state, _submit("b", {0}, direct=True)) == [
        SendTask(task_id="b", engine=0, stimulus_id="m-b"),
    ]
    assert state.load(0) == 2
    assert _handle(state, _submit("c")) == []


def test_a_retried_task_joins_the_back_of_the_ready_line() -> None:
    state = _state(hwm=1)
    _engines(state, 0)
    _handle(state, _submit("a", retries=1), _submit("b"))
    assert _handle(state, _finished("a", 0, "error")) == [
        SendTask(task_id="b", engine=0, stimulus_id="f-a"),
    ]
    assert _handle(state, _finished("b", 0)) == [
        ReplyToClient(task_id="b", engine=0, status="ok", stimulus_id="f-b"),
        SendTask(task_id="a", engine=0, stimulus_id="f-b"),
    ]


def test_a_direct_task_is_sent_as_soon_as_its_dependency_is_done() -> None:
    state = _state(hwm=1)
    _engines(state, 0)
    _handle(state, _submit("a"), _submit("b"), _submit("c", {0}, direct=True, after=frozenset("a")))
    assert _handle(state, _finished("a", 0)) == [
        ReplyToClient(task_id="a", engine=0, status="ok", stimulus_id="f-a"),
        SendTask(task_id="c", engine=0, stimulus_id="f-a"),
    ]
    assert state.state_of("b") is TaskState.READY  # direct tasks count towards the load


def test_a_direct_task_needs_exactly_one_target() -> None:
    state = _state()
    _engines(state, 0, 1)
    with pytest.raises(SchedulerError, match="exactly one target"):
        state.handle(_submit("a", {0, 1}, direct=True))
    with pytest.raises(SchedulerError, match="unknown task"):
        state.state_of("a")


# -- unsatisfiable tasks ----------------------------------------------------------------


def test_a_task_whose_targets_are_unknown_fails_at_once() -> None:
    state = _state()
    _engines(state, 0)
    assert _handle(state, _submit("a", {5, 7})) == [
        FailTask(
            task_id="a",
            kind="unsatisfiable",
            reason="no live engine among targets [5, 7]",
            stimulus_id="m-a",
        ),
    ]


def test_a_direct_task_at_a_lost_engine_fails_at_once() -> None:
    state = _state()
    _engines(state, 0, 1)
    _handle(state, _lost(1))
    assert _handle(state, _submit("a", {1}, direct=True)) == [
        FailTask(
            task_id="a",
            kind="unsatisfiable",
            reason="no live engine among targets [1]",
            stimulus_id="m-a",
        ),
    ]


def test_load_balanced_tasks_fail_once_every_engine_is_lost() -> None:
    state = _state(hwm=1)
    _engines(state, 0)
    _handle(state, _submit("a", retries=1), _submit("b"))
    assert _handle(state, _lost(0)) == [
        ForgetEngine(engine=0, stimulus_id="x0"),
        FailTask(
            task_id="a",
            kind="engine-died",
            reason="engine 0 died while running task 'a'",
            stimulus_id="x0",
        ),
        FailTask(
            task_id="b",
            kind="unsatisfiable",
            reason="every registered engine was lost",
            stimulus_id="x0",
        ),
    ]
    assert _handle(state, _submit("c")) == [
        FailTask(
            task_id="c",
            kind="unsatisfiable",
            reason="every registered engine was lost",
            stimulus_id="m-c",
        ),
    ]


def test_a_waiting_task_whose_targets_all_die_fails_as_unsatisfiable() -> None:
    state = _state()
    _engines(state, 0, 1)
    _handle(state, _submit("a", {0}), _submit("b", {1}, after=frozenset({"a"})))
    assert _handle(state, _lost(1)) == [
        ForgetEngine(engine=1, stimulus_id="x1"),
        FailTask(
            task_id="b",
            kind="unsatisfiable",
            reason="no live engine among targets [1]",
            stimulus_id="x1",
        ),
    ]


# -- dependencies -----------------------------------------------------------------------


def test_after_waits_until_its_dependencies_finish_ok() -> None:
    state = _state()
    _engines(state, 0, 1)
    assert _handle(state, _submit("a"), _submit("b"), _submit("c", after=frozenset("ab"))) == [
        SendTask(task_id="a", engine=0, stimulus_id="m-a"),
        SendTask(task_id="b", engine=1, stimulus_id="m-b"),
    ]
    assert state.state_of("c") is TaskState.WAITING
    assert _handle(state, _finished("b", 1)) == [
        ReplyToClient(task_id="b", engine=1, status="ok", stimulus_id="f-b"),
    ]
    assert _handle(state, _finished("a", 0)) == [
        ReplyToClient(task_id="a", engine=0, status="ok", stimulus_id="f-a"),
        SendTask(task_id="c", engine=0, stimulus_id="f-a"),
    ]


def test_a_failed_dependency_fails_the_dependents_transitively() -> None:
    state = _state()
    _engines(state, 0)
    _handle(state, _submit("a"), _submit("b", after=frozenset("a")))
    _handle(state, _submit("c", after=frozenset("b")), _submit("d", after=frozenset("a")))
    assert _handle(state, _finished("a", 0, "error")) == [
        ReplyToClient(task_id="a", engine=0, status="error", stimulus_id="f-a"),
        FailTask(
            task_id="b", kind="dependency-failed", reason="dependency 'a' failed", stimulus_id="f-a"
        ),
        FailTask(
            task_id="d", kind="dependency-failed", reason="dependency 'a' failed", stimulus_id="f-a"
        ),
        FailTask(
            task_id="c", kind="dependency-failed", reason="dependency 'b' failed", stimulus_id="f-a"
        ),
    ]


def test_dependencies_already_finished_are_judged_at_submission() -> None:
    state = _state()
    _engines(state, 0)
    _handle(state, _submit("ok"), _finished("ok", 0), _submit("bad"), _finished("bad", 0, "error"))
    assert _handle(state, _submit("a", after=frozenset({"ok"}))) == [
        SendTask(task_id="a", engine=0, stimulus_id="m-a"),
    ]
    assert _handle(state, _submit("b", after=frozenset({"ok", "bad"}))) == [
        FailTask(
            task_id="b",
            kind="dependency-failed",
            reason="dependency 'bad' failed",
            stimulus_id="m-b",
        ),
    ]


def test_an_unknown_dependency_makes_a_task_unsatisfiable() -> None:
    state = _state()
    _engines(state, 0)
    assert _handle(state, _submit("a", after=frozenset({"a", "ghost"}))) == [
        FailTask(
            task_id="a",
            kind="unsatisfiable",
            reason="unknown dependency ['a', 'ghost']",
            stimulus_id="m-a",
        ),
    ]


# -- errors and retries -----------------------------------------------------------------


def test_an_error_without_retries_is_relayed_to_the_client() -> None:
    state = _state()
    _engines(state, 0)
    _handle(state, _submit("a"))
    assert _handle(state, _finished("a", 0, "error")) == [
        ReplyToClient(task_id="a", engine=0, status="error", stimulus_id="f-a"),
    ]
    assert state.state_of("a") is TaskState.FAILED


def test_an_error_with_retries_reruns_on_another_engine() -> None:
    state = _state()
    _engines(state, 0, 1)
    assert _handle(state, _submit("a", retries=2)) == [
        SendTask(task_id="a", engine=0, stimulus_id="m-a"),
    ]
    # engine 1 is busier, yet the retry avoids engine 0, which failed the task
    _handle(state, _submit("b", {1}), _submit("c", {1}))
    assert _handle(state, _finished("a", 0, "error")) == [
        SendTask(task_id="a", engine=1, stimulus_id="f-a"),
    ]
    assert _handle(state, _finished("a", 1, "error")) == [
        SendTask(task_id="a", engine=0, stimulus_id="f-a"),
    ]
    assert _handle(state, _finished("a", 0, "error")) == [
        ReplyToClient(task_id="a", engine=0, status="error", stimulus_id="f-a"),
    ]


def test_a_retry_reuses_the_failing_engine_when_it_is_the_only_one() -> None:
    state = _state()
    _engines(state, 0)
    _handle(state, _submit("a", retries=1))
    assert _handle(state, _finished("a", 0, "error")) == [
        SendTask(task_id="a", engine=0, stimulus_id="f-a"),
    ]


def test_retry_on_engine_death_does_not_retry_errors() -> None:
    state = _state()
    _engines(state, 0, 1)
    _handle(state, _submit("a", retries=3, retry_on="engine-death"))
    assert _handle(state, _finished("a", 0, "error")) == [
        ReplyToClient(task_id="a", engine=0, status="error", stimulus_id="f-a"),
    ]


# -- engine death -----------------------------------------------------------------------


def test_engine_death_reruns_tasks_with_retries_and_fails_the_others() -> None:
    state = _state()
    _engines(state, 0, 1)
    _handle(state, _submit("x", {1}), _submit("y", {1}), _submit("z", {1}))
    _handle(
        state,
        _submit("a", {0, 1}, retries=1),
        _submit("b", {0}),
        _submit("c", {0, 1}, retries=1, retry_on="engine-death"),
        _submit("d", {0}, retries=2, direct=True),
    )
    assert state.load(0) == 4
    assert _handle(state, _lost(0, "heartbeat")) == [
        ForgetEngine(engine=0, stimulus_id="x0"),
        FailTask(
            task_id="b",
            kind="engine-died",
            reason="engine 0 was lost while running task 'b': heartbeat",
            stimulus_id="x0",
        ),
        FailTask(
            task_id="d",
            kind="engine-died",
            reason="engine 0 was lost while running task 'd': heartbeat",
            stimulus_id="x0",
        ),
        SendTask(task_id="a", engine=1, stimulus_id="x0"),
        SendTask(task_id="c", engine=1, stimulus_id="x0"),
    ]
    assert state.load(1) == 5


def test_a_task_that_kills_three_engines_is_poison() -> None:
    state = _state()
    _engines(state, 0, 1, 2, 3)
    assert _handle(state, _submit("a", retries=10)) == [
        SendTask(task_id="a", engine=0, stimulus_id="m-a"),
    ]
    assert _handle(state, _lost(0)) == [
        ForgetEngine(engine=0, stimulus_id="x0"),
        SendTask(task_id="a", engine=1, stimulus_id="x0"),
    ]
    assert _handle(state, _lost(1)) == [
        ForgetEngine(engine=1, stimulus_id="x1"),
        SendTask(task_id="a", engine=2, stimulus_id="x1"),
    ]
    assert _handle(state, _lost(2)) == [
        ForgetEngine(engine=2, stimulus_id="x2"),
        FailTask(
            task_id="a",
            kind="engine-died",
            reason="task killed 3 engines (0, 1, 2); engine 2 died",
            stimulus_id="x2",
        ),
    ]
    assert state.live_engines == {3}


def test_an_engine_replaced_under_the_same_id_counts_once_per_death() -> None:
    state = _state()
    _engines(state, 0, 1)
    _handle(state, _submit("a", retries=10))
    _handle(state, _lost(0), EngineRegistered(engine=0, stimulus_id="again0"))
    _handle(state, _lost(1), EngineRegistered(engine=1, stimulus_id="again1"))
    assert state.state_of("a") is TaskState.ASSIGNED
    assert _handle(state, _lost(0, "killed by signal 9")) == [
        ForgetEngine(engine=0, stimulus_id="x0"),
        FailTask(
            task_id="a",
            kind="engine-died",
            reason="task killed 3 engines (0, 1, 0); engine 0 was lost: killed by signal 9",
            stimulus_id="x0",
        ),
    ]


def test_a_task_may_set_its_own_poison_threshold() -> None:
    state = _state()
    _engines(state, 0, 1, 2)
    _handle(state, _submit("a", retries=10, max_engine_deaths=2), _lost(0))
    assert _handle(state, _lost(1)) == [
        ForgetEngine(engine=1, stimulus_id="x1"),
        FailTask(
            task_id="a",
            kind="engine-died",
            reason="task killed 2 engines (0, 1); engine 1 died",
            stimulus_id="x1",
        ),
    ]
    with pytest.raises(SchedulerError, match="max_engine_deaths >= 1"):
        state.handle(_submit("b", max_engine_deaths=0))


def test_retries_run_out_before_the_poison_threshold() -> None:
    state = _state()
    _engines(state, 0, 1, 2)
    _handle(state, _submit("a", retries=1), _lost(0))
    assert _handle(state, _lost(1)) == [
        ForgetEngine(engine=1, stimulus_id="x1"),
        FailTask(
            task_id="a",
            kind="engine-died",
            reason="engine 1 died while running task 'a'",
            stimulus_id="x1",
        ),
    ]


def test_the_poison_threshold_is_a_constructor_argument() -> None:
    state = _state(poison_after=1)
    _engines(state, 0, 1)
    _handle(state, _submit("a", retries=5))
    assert _handle(state, _lost(0)) == [
        ForgetEngine(engine=0, stimulus_id="x0"),
        FailTask(
            task_id="a",
            kind="engine-died",
            reason="task killed 1 engine (0); engine 0 died",
            stimulus_id="x0",
        ),
    ]


def test_a_stale_reply_from_a_lost_engine_is_counted_and_dropped() -> None:
    state = _state()
    _engines(state, 0, 1)
    _handle(state, _submit("a", retries=1), _lost(0))
    assert _handle(state, _finished("a", 0)) == []
    assert state.stale == 1
    assert _handle(state, _finished("a", 1)) == [
        ReplyToClient(task_id="a", engine=1, status="ok", stimulus_id="f-a"),
    ]


def test_a_lost_engine_that_registers_again_gets_tasks_again() -> None:
    state = _state()
    _engines(state, 0)
    _handle(state, _lost(0))
    assert _handle(state, EngineRegistered(engine=0, stimulus_id="again"), _submit("a")) == [
        SendTask(task_id="a", engine=0, stimulus_id="m-a"),
    ]


# -- aborts and deadlines ---------------------------------------------------------------


def test_abort_fails_a_queued_task_and_its_dependents() -> None:
    state = _state(hwm=1)
    _engines(state, 0)
    _handle(state, _submit("a"), _submit("b"), _submit("c", after=frozenset("b")))
    assert _handle(state, TaskAbortRequested(task_id="b", stimulus_id="ab")) == [
        FailTask(
            task_id="b",
            kind="aborted",
            reason="aborted before it was sent to an engine",
            stimulus_id="ab",
        ),
        FailTask(
            task_id="c", kind="dependency-failed", reason="dependency 'b' failed", stimulus_id="ab"
        ),
    ]


def test_abort_of_an_assigned_task_asks_its_engine_and_disables_retries() -> None:
    state = _state()
    _engines(state, 0, 1)
    _handle(state, _submit("a", retries=3))
    assert _handle(state, TaskAbortRequested(task_id="a", stimulus_id="ab")) == [
        AbortOnEngine(task_id="a", engine=0, stimulus_id="ab"),
    ]
    assert _handle(state, _finished("a", 0, "error")) == [
        ReplyToClient(task_id="a", engine=0, status="error", stimulus_id="f-a"),
    ]


def test_an_aborted_reply_is_relayed_and_not_retried() -> None:
    state = _state()
    _engines(state, 0)
    _handle(state, _submit("a", retries=3), TaskAbortRequested(task_id="a", stimulus_id="ab"))
    assert _handle(state, _finished("a", 0, "aborted")) == [
        ReplyToClient(task_id="a", engine=0, status="aborted", stimulus_id="f-a"),
    ]


def test_a_deadline_fails_a_task_not_yet_sent() -> None:
    state = _state()
    _handle(state, _submit("a", deadline=10.0), _submit("b", deadline=20.0))
    assert _handle(state, Tick(now=9.5, stimulus_id="t1")) == []
    assert _handle(state, Tick(now=10.0, stimulus_id="t2")) == [
        FailTask(
            task_id="a",
            kind="timeout",
            reason="not sent to an engine by its deadline 10.0",
            stimulus_id="t2",
        ),
    ]
    assert _handle(state, EngineRegistered(engine=0, stimulus_id="r0")) == [
        SendTask(task_id="b", engine=0, stimulus_id="r0"),
    ]
    assert _handle(state, Tick(now=30.0, stimulus_id="t3")) == []
    assert state.state_of("b") is TaskState.ASSIGNED


# -- refused events ---------------------------------------------------------------------


def test_a_reply_for_a_task_not_on_that_engine_is_refused_and_changes_nothing() -> None:
    state = _state()
    _engines(state, 0, 1)
    _handle(state, _submit("a"), _submit("b", after=frozenset("a")))
    with pytest.raises(SchedulerError, match="task 'a' is assigned, not on engine 1"):
        state.handle(_finished("a", 1))
    with pytest.raises(SchedulerError, match="task 'b' is waiting, not on engine 0"):
        state.handle(_finished("b", 0))
    state.validate()
    assert state.load(0) == 1


def test_a_finished_task_cannot_be_aborted_or_submitted_again() -> None:
    state = _state()
    _engines(state, 0)
    _handle(state, _submit("a"), _finished("a", 0))
    with pytest.raises(SchedulerError, match="task 'a' is done: 'abort' is not allowed"):
        state.handle(TaskAbortRequested(task_id="a", stimulus_id="ab"))
    with pytest.raises(SchedulerError, match="task 'a' is done: 'submit' is not allowed"):
        state.handle(_submit("a"))


def test_engine_events_must_match_the_engines_liveness() -> None:
    state = _state()
    _engines(state, 0)
    with pytest.raises(SchedulerError, match="already registered"):
        state.handle(EngineRegistered(engine=0, stimulus_id="r0"))
    with pytest.raises(SchedulerError, match="not live"):
        state.handle(_lost(3))
    with pytest.raises(SchedulerError, match="does not handle SchedulerEvent"):
        state.handle(SchedulerEvent(stimulus_id="?"))


def test_a_refused_event_carries_the_instructions_of_the_events_before_it() -> None:
    state = _state()
    _engines(state, 0)
    with pytest.raises(SchedulerError) as caught:
        state.handle(_submit("a"), _finished("zzz", 0), _submit("b"))
    assert caught.value.applied == (SendTask(task_id="a", engine=0, stimulus_id="m-a"),)
    assert state.state_of("a") is TaskState.ASSIGNED
    state.validate()


# -- bookkeeping ------------------------------------------------------------------------


def test_the_stimulus_log_keeps_the_last_events_including_refused_ones() -> None:
    state = _state(log_size=2)
    first, second = EngineRegistered(engine=0, stimulus_id="r0"), _submit("a")
    state.handle(first, second)
    with pytest.raises(SchedulerError):
        state.handle(_lost(9))
    assert list(state.stimulus_log) == [second, _lost(9)]


def test_validate_reports_a_broken_invariant() -> None:
    state = _state()
    _engines(state, 0)
    _handle(state, _submit("a"))
    state._engines.release(0, "a")  # what no handler may ever do
    with pytest.raises(SchedulerError, match=r"task 'a' is TaskState\.ASSIGNED on 0"):
        state.validate()


def test_validate_reports_a_task_answered_twice_or_not_at_all() -> None:
    state = _state()
    _engines(state, 0)
    _handle(state, _submit("a"), _finished("a", 0))
    state._tasks.get("a").answers = 2  # what no handler may ever do
    with pytest.raises(SchedulerError, match=r"DONE task 'a' was answered 2 times"):
        state.validate()
    state._tasks.get("a").answers = 0
    with pytest.raises(SchedulerError, match=r"DONE task 'a' was answered 0 times"):
        state.validate()


def test_finished_states_have_no_way_out() -> None:
    assert not [key for key in TRANSITIONS if key[0] in (TaskState.DONE, TaskState.FAILED)]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="hwm"):
        _state(hwm=-1)
    with pytest.raises(ValueError, match="poison_after"):
        _state(poison_after=0)


def test_a_forgotten_task_is_dropped_and_only_finished_tasks_can_be() -> None:
    from parallel.scheduler import TaskForgotten

    state = SchedulerState(rng=Random(0))
    state.handle(EngineRegistered(engine=0, stimulus_id="r0"))
    assert state.handle(TaskSubmitted(task_id="a", targets=None, stimulus_id="s")) == [
        SendTask(task_id="a", engine=0, stimulus_id="s")
    ]
    with pytest.raises(SchedulerError, match="cannot be forgotten"):
        state.handle(TaskForgotten(task_id="a", stimulus_id="f0"))
    state.handle(TaskFinished(task_id="a", engine=0, status="ok", stimulus_id="m"))
    assert state.handle(TaskForgotten(task_id="a", stimulus_id="f1")) == []
    state.validate()
    with pytest.raises(SchedulerError, match="unknown task"):
        state.state_of("a")


# -- orphans: tasks with retries wait for a lost engine's replacement ---------------------


def test_with_an_orphan_grace_a_retried_task_waits_for_a_replacement() -> None:
    state = _state(orphan_grace=5.0)
    _engines(state, 0)
    _handle(state, _submit("a", retries=1), _submit("b"))
    assert _handle(state, _lost(0)) == [
        ForgetEngine(engine=0, stimulus_id="x0"),
        FailTask(
            task_id="b",
            kind="engine-died",
            reason="engine 0 died while running task 'b'",
            stimulus_id="x0",
        ),
    ]  # a task without retries still fails at once
    assert state.state_of("a") is TaskState.READY
    assert state.waiting_for_engines
    assert _handle(state, EngineRegistered(engine=0, stimulus_id="again")) == [
        SendTask(task_id="a", engine=0, stimulus_id="again"),
    ]
    assert _handle(state, Tick(now=1.0, stimulus_id="t1")) == []
    assert not state.waiting_for_engines


def test_an_orphan_fails_once_no_engine_came_back_within_the_grace() -> None:
    state = _state(orphan_grace=5.0)
    _engines(state, 0)
    _handle(state, _submit("a", retries=2), _lost(0), _submit("c", retries=1))
    assert state.state_of("c") is TaskState.READY  # submitted while no engine is live
    assert _handle(state, Tick(now=10.0, stimulus_id="t0")) == []  # first seen waiting
    assert _handle(state, Tick(now=14.9, stimulus_id="t1")) == []
    reason = "no engine it may run on came back within 5 s"
    assert _handle(state, Tick(now=15.0, stimulus_id="t2")) == [
        FailTask(task_id="a", kind="unsatisfiable", reason=reason, stimulus_id="t2"),
        FailTask(task_id="c", kind="unsatisfiable", reason=reason, stimulus_id="t2"),
    ]
    assert not state.waiting_for_engines


def test_a_death_reads_once_naming_the_engine_and_how_it_died() -> None:
    # The hub's reason starts "died: "; the failure says "died" once, then how.
    state = _state()
    _engines(state, 1)
    _handle(state, _submit("t"))
    hub_reason = "died: killed by signal 9 (SIGKILL); it is being restarted"
    failed = _handle(state, _lost(1, hub_reason))[1]
    assert isinstance(failed, FailTask)
    assert failed.reason == (
        "engine 1 died while running task 't': killed by signal 9 (SIGKILL); it is being restarted"
    )
    assert failed.reason.count("died") == 1


def test_without_an_orphan_grace_a_task_fails_when_every_engine_is_lost() -> None:
    state = _state()
    _engines(state, 0)
    _handle(state, _submit("a", retries=3))
    assert _handle(state, _lost(0)) == [
        ForgetEngine(engine=0, stimulus_id="x0"),
        FailTask(
            task_id="a",
            kind="engine-died",
            reason="engine 0 died while running task 'a'",
            stimulus_id="x0",
        ),
    ]
    with pytest.raises(ValueError, match="orphan_grace >= 0"):
        _state(orphan_grace=-1.0)
