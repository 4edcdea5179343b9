"""The abort-after-error window: which queued requests a failed cell takes down with it.

Theory of operation
-------------------
Messaging spec, "Execute": when an ``execute_request`` with ``stop_on_error`` (the
default) fails, the execute requests already queued behind it are answered with
``status: aborted`` instead of running; "run all" must stop at the first error.

- :meth:`AbortWindow.opened` is told the requests that were queued *when the failed
  cell finished* (read before its reply goes out: a request sent in reaction to the
  error or to an abort must run, not be aborted too).
- :meth:`AbortWindow.closed` is called once the failed request is finished (its reply
  and ``idle`` are out, so replies stay in request order and busy/idle never nest) and
  returns what to do with each queued request, in arrival order: ``Abort`` for an
  ``execute_request``, ``Dispatch`` for anything else (an ``apply_request`` of the
  parallel layer still runs after a failed ``%px`` cell, as in ipyparallel; a
  ``kernel_info_request`` is answered).

The window holds no clock and does no I/O; the server reads the queue and acts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kernel.protocol import Received

__all__ = ["Abort", "AbortAction", "AbortWindow", "Dispatch"]


@dataclass(frozen=True, slots=True)
class Abort:
    """Answer this ``execute_request`` with ``status: aborted``; do not run it."""

    received: Received


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Handle this request as usual."""

    received: Received


AbortAction = Abort | Dispatch


class AbortWindow:
    """Remembers the requests queued behind a failed cell until that cell is finished."""

    def __init__(self) -> None:
        #: The requests queued when the failed cell ended; ``None`` when no window is open.
        self._queued: list[Received] | None = None

    @property
    def is_open(self) -> bool:
        return self._queued is not None

    def opened(self, queued: Sequence[Received]) -> None:
        """A cell failed with ``stop_on_error``; ``queued`` arrived before its reply."""
        self._queued = [*(self._queued or ()), *queued]

    def closed(self) -> list[AbortAction]:
        """The failed request is finished: what to do with each queued request, in order."""
        queued, self._queued = self._queued or [], None
        return [
            Abort(item) if item.message.msg_type == "execute_request" else Dispatch(item)
            for item in queued
        ]
