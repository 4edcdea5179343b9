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

    def __init__(self) -> None:
        #: Live engines.
        self._engines: dict[EngineId, _Engine] = {}
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
        self._engines[engine].assigned[task_id] = None
        self._engines[engine].last_sent = self._sends

    def release(self, engine: EngineId, task_id: str) -> None:
        del self._engines[engine].assigned[task_id]
        self.version += 1

    def with_room(self, engines: Iterable[EngineId], hwm: int) -> list[EngineId]:
        """Those of ``engines`` holding fewer than ``hwm`` tasks (all of them if ``hwm`` is 0)."""
        return [e for e in engines if not hwm or len(self._engines[e].assigned) < hwm]

    def has_room(self, hwm: int) -> bool:
        """Whether some live engine holds fewer than ``hwm`` tasks (0: any live engine)."""
        return bool(self.with_room(self._engines, hwm))

    def least_recently_used(self, engines: Iterable[EngineId]) -> list[EngineId]:
        """``engines`` in least-recently-used order (module docstring)."""
        return sorted(engines, key=lambda e: (self._engines[e].last_sent, e))
