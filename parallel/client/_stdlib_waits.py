"""``concurrent.futures.wait()`` and ``as_completed()`` on results, with no thread.

Theory of operation
-------------------
The standard library's ``wait``/``as_completed`` install a *waiter* on each future
(``future._waiters.append(waiter)``) and then block in ``waiter.event.wait(timeout)``,
counting on another thread to complete the futures. The client has no such thread.
So an :class:`~._asyncresult.AsyncResult` keeps its waiters in a :class:`Waiters` list,
whose ``append`` wraps the waiter's event in a :class:`PumpingEvent`: its ``wait`` pumps
the clients' sockets (which completes results, which sets the event) until the event is
set or the timeout passes. Every other use of the event goes to the original, so futures
completed by real threads (mixed into the same ``wait``) still wake it; the pump waits in
slices of :data:`SLICE` seconds so such a completion is seen.

This leans on two CPython internals, unchanged since 3.2: ``Future._waiters`` and the
waiters' ``event`` attribute (``concurrent/futures/_base.py``). A canary test
(``tests/parallel/test_stdlib_waits.py``) fails if either changes.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from ._pump import Pump

__all__ = ["SLICE", "PumpingEvent", "Waiters"]

#: Longest single pump while a stdlib wait blocks, so that a future completed by another
#: thread (not one of ours) is noticed this soon.
SLICE = 0.05


class _Event(Protocol):
    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class PumpingEvent:
    """A waiter's event whose ``wait`` pumps the clients whose results it waits for."""

    def __init__(self, event: _Event) -> None:
        self._event = event
        self.pumps: list[Pump] = []

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._event.is_set():
            remaining = SLICE if deadline is None else min(SLICE, deadline - time.monotonic())
            if remaining <= 0:
                break
            per_pump = remaining / max(1, len(self.pumps))
            for pump in self.pumps:
                pump.pump(per_pump)
        return self._event.is_set()


class Waiters(list[Any]):
    """``AsyncResult._waiters``: wraps each installed waiter's event (module docstring)."""

    __slots__ = ("_pump",)  # one per result: no instance dict

    def __init__(self, pump: Pump) -> None:
        super().__init__()
        self._pump = pump

    def append(self, waiter: Any) -> None:
        event = waiter.event
        if not isinstance(event, PumpingEvent):
            event = waiter.event = PumpingEvent(event)
        if self._pump not in event.pumps:
            event.pumps.append(self._pump)
        super().append(waiter)
