"""The scheduler's view of its engines: which are live, what each holds, who is next.

:class:`EnginePool` keeps, for every live engine, the tasks it was sent and not
yet answered (its *load*) and when it was last sent one. The least-recently-used
order the schemes rely on (``_schemes`` module docstring) comes from here:
engines never sent a task first, by id, then by the time of their last task.

Depth: an engine has room for a load-balanced task while it holds fewer than its
*depth*: ``hwm``, or ``deep_hwm`` once the scheduler found it *fast* (``set_fast``:
it answered many tasks a second). Tasks queued on an engine cost it less per task
(it takes several per wake-up) but wait behind whatever runs there, so only engines
running short tasks get the deep queue. A task that must start by a deadline is
offered only engines below ``hwm`` (``with_room(..., shallow=True)``).
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
    #: Its depth now: ``hwm``, or ``deep_hwm`` while it is fast; 0: no limit.
    depth: int = 0
    #: Replies since the scheduler last asked (:meth:`take_answered`).
    answered: int = 0


class EnginePool:
    """Live engines and the tasks they hold. Changed only by ``SchedulerState``."""

    def __init__(self, hwm: int = 0, deep_hwm: int | None = None) -> None:
        deep = hwm if deep_hwm is None else deep_hwm
        if hwm < 0 or (hwm and deep < hwm) or (not hwm and deep):
            raise ValueError("hwm must be >= 0, deep_hwm >= hwm (0 with hwm 0)")
        #: Most tasks an engine holds before it has no room for a load-balanced one; 0: no
        #: limit (a direct task goes whatever the load, so a load can exceed it).
        self.hwm = hwm
        #: The same for a fast engine (module docstring).
        self.deep_hwm = deep
        #: Live engines.
        self._engines: dict[EngineId, _Engine] = {}
        #: How many live engines hold their depth in tasks or more: :meth:`has_room` is
        #: asked after every scheduler event, so it is kept, not counted (0 with no limit).
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
        self._engines[engine] = _Engine(depth=self.hwm)
        self._known.add(engine)
        self.version += 1

    def remove(self, engine: EngineId) -> list[str]:
        """Drop live ``engine``; the tasks it held, in the order they were sent."""
        record = self._engines.pop(engine, None)
        if record is None:
            raise SchedulerError(f"engine {engine} is not live, so cannot be lost")
        if record.depth and len(record.assigned) >= record.depth:
            self._full -= 1
        self.version += 1
        return list(record.assigned)

    def load(self, engine: EngineId) -> int:
        """How many tasks live ``engine`` holds; :class:`SchedulerError` if it is not live."""
        if engine not in self._engines:
            raise SchedulerError(f"engine {engine} is not live")
        return len(self._engines[engine].assigned)

    def depth(self, engine: EngineId) -> int:
        """Live ``engine``'s depth now: ``hwm`` or ``deep_hwm``."""
        return self._engines[engine].depth

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
        if len(assigned) == record.depth:  # never true with no limit: there is a task now
            self._full += 1

    def release(self, engine: EngineId, task_id: str) -> None:
        record = self._engines[engine]
        assigned = record.assigned
        if len(assigned) == record.depth:
            self._full -= 1
        del assigned[task_id]
        record.answered += 1
        self.version += 1

    def with_room(self, engines: Iterable[EngineId], *, shallow: bool = False) -> list[EngineId]:
        """Those of ``engines`` holding fewer tasks than their depth (``shallow``: than
        ``hwm``, whether fast or not); all of them if there is no limit."""
        if not self.hwm:
            return list(engines)
        live = self._engines
        if shallow:
            hwm = self.hwm
            return [e for e in engines if len(live[e].assigned) < hwm]
        return [e for e in engines if len(live[e].assigned) < live[e].depth]

    def take_answered(self, engine: EngineId) -> int:
        """Replies from live ``engine`` since the last call (0 at the first)."""
        record = self._engines[engine]
        answered, record.answered = record.answered, 0
        return answered

    def set_fast(self, engine: EngineId, fast: bool) -> None:
        """Give live ``engine`` the deep queue (``fast``) or take it back (``hwm``)."""
        record = self._engines[engine]
        depth = self.deep_hwm if fast else self.hwm
        if depth == record.depth:
            return
        load = len(record.assigned)
        was_full = bool(record.depth) and load >= record.depth
        record.depth = depth
        self._full += (bool(depth) and load >= depth) - was_full
        self.version += 1  # room changed: placements that found none may find one

    def has_room(self) -> bool:
        """Whether some live engine holds fewer than ``hwm`` tasks (0: any live engine)."""
        return len(self._engines) > self._full

    def validate(self) -> None:
        """The count of full engines is what counting them gives."""
        full = sum(1 for e in self._engines.values() if e.depth and len(e.assigned) >= e.depth)
        if full != self._full:
            raise SchedulerError(f"{self._full} engines are counted full, {full} are")
        for engine, record in self._engines.items():
            if record.depth not in (self.hwm, self.deep_hwm):
                raise SchedulerError(f"engine {engine} has depth {record.depth}")

    def least_recently_used(self, engines: Iterable[EngineId]) -> list[EngineId]:
        """``engines`` in least-recently-used order (module docstring)."""
        return sorted(engines, key=lambda e: (self._engines[e].last_sent, e))
