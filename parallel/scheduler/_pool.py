"""The scheduler's view of its engines: which are live, what each holds, who is next.

:class:`EnginePool` keeps, for every live engine, the tasks it was sent and not
yet answered (its *load*) and when it was last sent one. The least-recently-used
order the schemes rely on (``_schemes`` module docstring) comes from here:
engines never sent a task first, by id, then by the time of their last task.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .._errors import SchedulerError
from ._events import EngineId

__all__ = ["EnginePool"]


@dataclass(slots=True, eq=False)
class _Engine:
    #: The tasks it holds, in the order they were sent (an ordered set).
    assigned: dict[str, None] = field(default_factory=dict)
    #: When it was last sent a task, on the pool's send counter; -1: never.
    last_sent: int = -1


class EnginePool:
    """Live engines and the tasks they hold. Changed only by ``SchedulerState``."""

    def __init__(self, hwm: int = 0) -> None:
        if hwm < 0:
            raise ValueError("hwm must be >= 0")
        #: Most tasks an engine holds before it has no room for a load-balanced one; 0: no
        #: limit (a direct task goes whatever the load, so a load can exceed it).
        self.hwm = hwm
        #: Live engines.
        self._engines: dict[EngineId, _Engine] = {}
        #: How many live engines hold ``hwm`` tasks or more: :meth:`has_room` is asked
        #: after every scheduler event, so it is kept, not counted (0 while ``hwm`` is 0).
        self._full = 0
        #: Every engine ever added, live or lost.
        self._known: set[EngineId] = set()
        #: Tasks sent so far: the clock of the least-recently-used order.
        self._sends = 0
        #: Bumped by every change of which engines are live or what they hold: a READY
        #: task that fit nowhere still fits nowhere while it stays the same.
        self.version = 0

    def __contains__(self, engine: object) -> bool:
        return engine in self._engines

    def __iter__(self) -> Iterator[EngineId]:
        return iter(self._engines)

    def __bool__(self) -> bool:
        return bool(self._engines)

    @property
    def ever_had_engines(self) -> bool:
        """Whether any engine was ever added (even if all are lost now)."""
        return bool(self._known)

    def add(self, engine: EngineId) -> None:
        """Make ``engine`` live, with no tasks; :class:`SchedulerError` if it is live already."""
        if engine in self._engines:
            raise SchedulerError(f"engine {engine} is already registered")
        self._engines[engine] = _Engine()
        self._known.add(engine)
        self.version += 1

    def remove(self, engine: EngineId) -> list[str]:
        """Drop live ``engine``; the tasks it held, in the order they were sent."""
        record = self._engines.pop(engine, None)
        if record is None:
            raise SchedulerError(f"engine {engine} is not live, so cannot be lost")
        if self.hwm and len(record.assigned) >= self.hwm:
            self._full -= 1
        self.version += 1
        return list(record.assigned)

    def load(self, engine: EngineId) -> int:
        """How many tasks live ``engine`` holds; :class:`SchedulerError` if it is not live."""
        if engine not in self._engines:
            raise SchedulerError(f"engine {engine} is not live")
        return len(self._engines[engine].assigned)

    def held(self, engine: EngineId) -> list[str]:
        """The tasks live ``engine`` holds, in the order they were sent."""
        return list(self._engines[engine].assigned)

    def assign(self, engine: EngineId, task_id: str) -> None:
        self._sends += 1
        self.version += 1
        record = self._engines[engine]
        assigned = record.assigned
        assigned[task_id] = None
        record.last_sent = self._sends
        if len(assigned) == self.hwm:  # never true while hwm is 0: there is a task now
            self._full += 1

    def release(self, engine: EngineId, task_id: str) -> None:
        assigned = self._engines[engine].assigned
        if len(assigned) == self.hwm:
            self._full -= 1
        del assigned[task_id]
        self.version += 1

    def with_room(self, engines: Iterable[EngineId]) -> list[EngineId]:
        """Those of ``engines`` holding fewer than ``hwm`` tasks (all of them if ``hwm`` is 0)."""
        hwm = self.hwm
        if not hwm:
            return list(engines)
        live = self._engines
        return [e for e in engines if len(live[e].assigned) < hwm]

    def has_room(self) -> bool:
        """Whether some live engine holds fewer than ``hwm`` tasks (0: any live engine)."""
        return len(self._engines) > self._full

    def validate(self) -> None:
        """The count of full engines is what counting them gives."""
        full = sum(1 for e in self._engines.values() if self.hwm and len(e.assigned) >= self.hwm)
        if full != self._full:
            raise SchedulerError(f"{self._full} engines are counted full, {full} are")

    def least_recently_used(self, engines: Iterable[EngineId]) -> list[EngineId]:
        """``engines`` in least-recently-used order (module docstring)."""
        return sorted(engines, key=lambda e: (self._engines[e].last_sent, e))
