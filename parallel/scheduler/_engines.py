"""Engine identities and liveness, as two small pure machines.

Theory of operation
-------------------
An engine is known by the uuid it sends in its ``registration_request``
(ipyparallel messaging, registration) and scheduled by a small integer id.
:class:`EngineRegistry` hands out the ids, 0, 1, 2... in registration order,
and never gives one to a second uuid. A uuid it knows gets its old id back,
whether the engine was lost and returns, or the controller restarted and was
given the old table (``EngineRegistry(known=...)``). :class:`HeartState` watches
registered engines and reports the ones whose heartbeat went quiet.

A controller wires them so that every engine event passes the registry once::

    registration_request -RegistrationReceived-> EngineRegistry -EngineRegistered-> scheduler, heart
    request died (KernelDied) -----EngineLost--> EngineRegistry -EngineLost-------> scheduler, heart
    HeartState (timeout) ----------EngineLost--> EngineRegistry
    heartbeat replies, clock --HeartbeatAnswered, Tick--> HeartState

The registry passes on an ``EngineLost`` only for a live engine, so the heart
and a failing request may both report one death and the scheduler sees it once.
Like the scheduler, neither machine reads a clock: time arrives in the events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .._errors import SchedulerError
from ._events import EngineId, EngineLost, EngineRegistered, SchedulerEvent, Tick

__all__ = ["EngineRegistry", "HeartState", "HeartbeatAnswered", "RegistrationReceived"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationReceived(SchedulerEvent):
    """An engine with this ``uuid`` asked to join (ipyparallel messaging, registration_request)."""

    uuid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatAnswered(SchedulerEvent):
    """``engine`` answered a heartbeat; the driver's clock read ``now`` (as in ``Tick``)."""

    engine: EngineId
    now: float


class EngineRegistry:
    """uuid <-> id, and which engines are live. Pure; mutate only through :meth:`handle`."""

    def __init__(self, known: Mapping[str, EngineId] | None = None) -> None:
        """``known`` is a previous registry's :meth:`known` table; all its engines start lost."""
        ids = dict(known or {})
        if len(set(ids.values())) != len(ids) or any(engine < 0 for engine in ids.values()):
            raise ValueError("known ids must be distinct and non-negative")
        #: uuid -> id, for every engine ever registered.
        self._ids = ids
        #: id -> uuid, the inverse.
        self._uuids = {engine: uuid for uuid, engine in ids.items()}
        #: The id the next new uuid gets.
        self._next = max(ids.values(), default=-1) + 1
        #: Engines registered and not lost since.
        self._live: set[EngineId] = set()

    def handle(self, *events: SchedulerEvent) -> list[EngineRegistered | EngineLost]:
        """The scheduler events that ``events`` amount to, in order.

        ``RegistrationReceived`` gives ``[EngineRegistered]``; for a uuid whose
        engine is still live it gives ``[EngineLost, EngineRegistered]``: the
        engine restarted, and what it was running is gone. ``EngineLost`` is
        passed on for a live engine and gives ``[]`` for one already lost (the
        second report of one death). Anything else, including the loss of an
        engine never registered, raises :class:`SchedulerError`.
        """
        out: list[EngineRegistered | EngineLost] = []
        for event in events:
            match event:
                case RegistrationReceived():
                    out += self._register(event)
                case EngineLost() if event.engine in self._uuids:
                    out += self._lose(event)
                case EngineLost():
                    raise SchedulerError(f"engine {event.engine} was never registered")
                case _:
                    raise SchedulerError(f"the registry does not handle {type(event).__name__}")
        return out

    def _register(self, event: RegistrationReceived) -> list[EngineRegistered | EngineLost]:
        engine = self._ids.get(event.uuid)
        if engine is None:
            engine = self._next
            self._next += 1
            self._ids[event.uuid] = engine
            self._uuids[engine] = event.uuid
        out: list[EngineRegistered | EngineLost] = []
        if engine in self._live:
            out.append(
                EngineLost(
                    engine=engine, reason="it registered again", stimulus_id=event.stimulus_id
                )
            )
        self._live.add(engine)
        out.append(EngineRegistered(engine=engine, stimulus_id=event.stimulus_id))
        return out

    def _lose(self, event: EngineLost) -> list[EngineLost]:
        if event.engine not in self._live:
            return []
        self._live.remove(event.engine)
        return [event]

    def id_of(self, uuid: str) -> EngineId | None:
        """The id given to ``uuid``, or ``None`` if it never registered."""
        return self._ids.get(uuid)

    def uuid_of(self, engine: EngineId) -> str:
        """The uuid of ``engine``; :class:`SchedulerError` if no engine has that id."""
        if engine not in self._uuids:
            raise SchedulerError(f"engine {engine} was never registered")
        return self._uuids[engine]

    @property
    def live(self) -> frozenset[EngineId]:
        """The engines registered and not lost since."""
        return frozenset(self._live)

    def known(self) -> dict[str, EngineId]:
        """Every uuid ever registered -> its id: what a restarted controller passes back in."""
        return dict(self._ids)


class HeartState:
    """Which watched engines stopped answering. Pure; mutate only through :meth:`handle`.

    An engine is watched from its ``EngineRegistered`` until its ``EngineLost``.
    Its clock starts at the first ``Tick`` or answer after registration; a
    ``Tick`` at which more than ``timeout`` seconds passed since its last answer
    reports it lost, once: it is no longer watched from then on.
    """

    def __init__(self, *, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError("the heartbeat timeout must be positive")
        #: Seconds without an answer after which an engine is lost.
        self.timeout = timeout
        #: Answers from engines not watched (arrived after their loss): counted, no effect.
        self.late_answers = 0
        #: Watched engine -> time of its last answer (``None``: clock not started).
        self._last_seen: dict[EngineId, float | None] = {}
        #: The latest ``Tick``; time never goes back.
        self._now: float | None = None

    def handle(self, *events: SchedulerEvent) -> list[EngineLost]:
        """The ``EngineLost`` events that ``events`` reveal, in engine id order per tick.

        Takes ``EngineRegistered`` (watch; an engine already watched raises
        :class:`SchedulerError`), ``EngineLost`` (stop watching; idempotent, as
        the heart stops watching the engines it reports), ``HeartbeatAnswered``
        and ``Tick`` (a tick earlier than the previous one raises). Anything
        else raises :class:`SchedulerError`.
        """
        out: list[EngineLost] = []
        for event in events:
            match event:
                case EngineRegistered():
                    if event.engine in self._last_seen:
                        raise SchedulerError(f"engine {event.engine} is already watched")
                    self._last_seen[event.engine] = None
                case EngineLost():
                    self._last_seen.pop(event.engine, None)
                case HeartbeatAnswered():
                    self._answered(event)
                case Tick():
                    out += self._tick(event)
                case _:
                    raise SchedulerError(f"the heart does not handle {type(event).__name__}")
        return out

    @property
    def watched(self) -> frozenset[EngineId]:
        """The engines whose heartbeat is being watched."""
        return frozenset(self._last_seen)

    def _answered(self, event: HeartbeatAnswered) -> None:
        if event.engine not in self._last_seen:
            self.late_answers += 1
            return
        last = self._last_seen[event.engine]
        self._last_seen[event.engine] = event.now if last is None else max(last, event.now)

    def _tick(self, event: Tick) -> list[EngineLost]:
        if self._now is not None and event.now < self._now:
            raise SchedulerError(f"time went back from {self._now} to {event.now}")
        self._now = event.now
        out: list[EngineLost] = []
        for engine in sorted(self._last_seen):
            last = self._last_seen[engine]
            if last is None:
                self._last_seen[engine] = event.now
            elif event.now - last > self.timeout:
                del self._last_seen[engine]
                reason = (
                    f"no heartbeat answer for {event.now - last:g} s (timeout {self.timeout:g} s)"
                )
                out.append(EngineLost(engine=engine, reason=reason, stimulus_id=event.stimulus_id))
        return out
