"""EngineRegistry and HeartState: engine ids and liveness, exact event lists."""

from __future__ import annotations

from random import Random

import pytest

from parallel import SchedulerError
from parallel.scheduler import (
    EngineLost,
    EngineRegistered,
    EngineRegistry,
    ForgetEngine,
    HeartbeatAnswered,
    HeartState,
    RegistrationReceived,
    SchedulerEvent,
    SchedulerState,
    SendTask,
    TaskSubmitted,
    Tick,
)


def _joined(uuid: str) -> RegistrationReceived:
    return RegistrationReceived(uuid=uuid, stimulus_id=f"reg-{uuid}")


def _lost(engine: int, reason: str = "died", sid: str = "x") -> EngineLost:
    return EngineLost(engine=engine, reason=reason, stimulus_id=sid)


def _tick(now: float) -> Tick:
    return Tick(now=now, stimulus_id=f"t{now:g}")


def _answer(engine: int, now: float) -> HeartbeatAnswered:
    return HeartbeatAnswered(engine=engine, now=now, stimulus_id=f"hb{engine}")


# -- EngineRegistry ---------------------------------------------------------------------


def test_ids_are_given_in_registration_order_from_zero() -> None:
    registry = EngineRegistry()
    assert registry.handle(_joined("a"), _joined("b"), _joined("c")) == [
        EngineRegistered(engine=0, stimulus_id="reg-a"),
        EngineRegistered(engine=1, stimulus_id="reg-b"),
        EngineRegistered(engine=2, stimulus_id="reg-c"),
    ]
    assert registry.live == {0, 1, 2}
    assert (registry.id_of("b"), registry.uuid_of(2), registry.id_of("zzz")) == (1, "c", None)


def test_a_lost_engine_that_returns_gets_its_old_id_and_ids_are_never_reused() -> None:
    registry = EngineRegistry()
    registry.handle(_joined("a"), _joined("b"))
    assert registry.handle(_lost(0)) == [_lost(0)]
    assert registry.handle(_joined("c"), _joined("a")) == [
        EngineRegistered(engine=2, stimulus_id="reg-c"),
        EngineRegistered(engine=0, stimulus_id="reg-a"),
    ]


def test_a_live_engine_registering_again_is_lost_then_registered() -> None:
    registry = EngineRegistry()
    registry.handle(_joined("a"))
    assert registry.handle(_joined("a")) == [
        EngineLost(engine=0, reason="it registered again", stimulus_id="reg-a"),
        EngineRegistered(engine=0, stimulus_id="reg-a"),
    ]
    assert registry.live == {0}


def test_a_second_report_of_one_death_is_absorbed() -> None:
    registry = EngineRegistry()
    registry.handle(_joined("a"))
    assert registry.handle(_lost(0, "heartbeat"), _lost(0, "request died")) == [
        _lost(0, "heartbeat"),
    ]
    assert registry.live == frozenset()


def test_a_restarted_controller_gives_known_uuids_their_old_ids() -> None:
    before = EngineRegistry()
    before.handle(_joined("a"), _joined("b"), _joined("c"), _lost(1))
    after = EngineRegistry(known=before.known())
    assert after.live == frozenset()
    assert after.handle(_joined("c"), _joined("new")) == [
        EngineRegistered(engine=2, stimulus_id="reg-c"),
        EngineRegistered(engine=3, stimulus_id="reg-new"),
    ]
    assert after.known() == {"a": 0, "b": 1, "c": 2, "new": 3}


def test_the_registry_refuses_what_it_cannot_know() -> None:
    registry = EngineRegistry()
    with pytest.raises(SchedulerError, match="engine 4 was never registered"):
        registry.handle(_lost(4))
    with pytest.raises(SchedulerError, match="engine 4 was never registered"):
        registry.uuid_of(4)
    with pytest.raises(SchedulerError, match="does not handle Tick"):
        registry.handle(_tick(1))
    with pytest.raises(ValueError, match="distinct"):
        EngineRegistry(known={"a": 0, "b": 0})


# -- HeartState -------------------------------------------------------------------------


def _heart(*engines: int, timeout: float = 10) -> HeartState:
    heart = HeartState(timeout=timeout)
    events = [EngineRegistered(engine=e, stimulus_id=f"r{e}") for e in engines]
    assert heart.handle(*events) == []
    return heart


def test_the_clock_of_an_engine_starts_at_the_first_tick_after_it_registered() -> None:
    heart = _heart(0)
    assert heart.handle(_tick(100)) == []
    assert heart.handle(_tick(110)) == []
    assert heart.handle(_tick(110.5)) == [
        EngineLost(
            engine=0,
            reason="no heartbeat answer for 10.5 s (timeout 10 s)",
            stimulus_id="t110.5",
        ),
    ]
    assert heart.watched == frozenset()


def test_answers_keep_an_engine_alive_and_silence_loses_it_once() -> None:
    heart = _heart(0, 1)
    heart.handle(_tick(0))
    assert heart.handle(_answer(0, 8), _tick(9), _answer(0, 15), _tick(15)) == [
        EngineLost(
            engine=1, reason="no heartbeat answer for 15 s (timeout 10 s)", stimulus_id="t15"
        ),
    ]
    assert heart.handle(_tick(40)) == [
        EngineLost(
            engine=0, reason="no heartbeat answer for 25 s (timeout 10 s)", stimulus_id="t40"
        ),
    ]
    assert heart.handle(_tick(80)) == []


def test_engines_lost_at_one_tick_come_in_id_order() -> None:
    heart = _heart(2, 0, 1)
    heart.handle(_tick(0))
    assert [event.engine for event in heart.handle(_tick(11))] == [0, 1, 2]


def test_a_lost_engine_is_no_longer_watched_and_its_late_answers_are_counted() -> None:
    heart = _heart(0, 1)
    heart.handle(_tick(0))
    heart.handle(_lost(1))
    assert heart.watched == {0}
    heart.handle(_lost(1))  # the heart's own report, fed back: idempotent
    assert heart.handle(_answer(1, 3), _tick(5)) == []
    assert heart.late_answers == 1


def test_the_heart_refuses_time_going_back_and_double_watching() -> None:
    heart = _heart(0)
    heart.handle(_tick(5))
    with pytest.raises(SchedulerError, match="time went back from 5 to 4"):
        heart.handle(_tick(4))
    with pytest.raises(SchedulerError, match="already watched"):
        heart.handle(EngineRegistered(engine=0, stimulus_id="r0"))
    with pytest.raises(SchedulerError, match="does not handle RegistrationReceived"):
        heart.handle(_joined("a"))
    with pytest.raises(ValueError, match="positive"):
        HeartState(timeout=0)


# -- wired as a controller wires them ---------------------------------------------------


def test_a_silent_engine_loses_its_task_to_a_live_one() -> None:
    registry, heart = EngineRegistry(), HeartState(timeout=10)
    scheduler = SchedulerState(rng=Random(0))

    def feed(*events: SchedulerEvent) -> list[object]:
        """What a controller does: engine events pass the registry once."""
        instructions: list[object] = []
        for event in events:
            if isinstance(event, (RegistrationReceived, EngineLost)):
                for fact in registry.handle(event):
                    instructions += scheduler.handle(fact)
                    instructions += feed(*heart.handle(fact))
            elif isinstance(event, (HeartbeatAnswered, Tick)):
                instructions += feed(*heart.handle(event))
                if isinstance(event, Tick):
                    instructions += scheduler.handle(event)
            else:
                instructions += scheduler.handle(event)
            scheduler.validate()
        return instructions

    feed(_joined("a"), _joined("b"), _tick(0))
    task = TaskSubmitted(task_id="t", targets=None, retries=1, stimulus_id="m")
    assert feed(task) == [SendTask(task_id="t", engine=0, stimulus_id="m")]
    assert feed(_answer(1, 9), _tick(10.5), _lost(0, "request died")) == [
        ForgetEngine(engine=0, stimulus_id="t10.5"),
        SendTask(task_id="t", engine=1, stimulus_id="t10.5"),
    ]
    assert registry.live == {1}
    assert heart.watched == {1}
