"""Whether a dead engine is replaced (pure).

Theory of operation
-------------------
When an engine's process dies, its launcher may start a replacement with the same uuid
(``Launcher.can_replace``), which registers again and gets the same id back
(``EngineRegistry``). :class:`RestartPolicy` decides, per uuid, from the times of its
deaths: each death within ``window`` seconds of the others counts, and the
``max_deaths``-th such death gives up instead of restarting. A uuid given up on stays
given up: a later report of its death (a replacement that died before registering, a
heartbeat report after the process report) never starts one more. So there is no restart
loop whatever the reports are: at most ``max_deaths - 1`` restarts per ``window``.

The policy reads no clock: the driver (the controller) passes ``now``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["GiveUp", "Restart", "RestartPolicy"]

#: Deaths within :data:`DEATH_WINDOW` seconds after which an engine is not replaced.
MAX_DEATHS = 3
#: Seconds over which deaths count towards :data:`MAX_DEATHS`.
DEATH_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class Restart:
    """Replace the engine; this is its ``count``-th restart."""

    uuid: str
    count: int
    reason: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Do not replace the engine: it died ``deaths`` times within ``window`` seconds."""

    uuid: str
    deaths: int
    window: float
    reason: str

    def describe(self) -> str:
        return (
            f"not restarted: it died {self.deaths} times within {self.window:g} s"
            f" (last: {self.reason})"
        )


@dataclass(slots=True)
class _History:
    deaths: deque[float] = field(default_factory=deque)
    restarts: int = 0
    #: The deaths counted when it was given up on (``None``: not given up).
    given_up: int | None = None


class RestartPolicy:
    """Restart or give up, per uuid; see the module docstring. Mutate only via :meth:`died`."""

    def __init__(self, *, max_deaths: int = MAX_DEATHS, window: float = DEATH_WINDOW) -> None:
        if max_deaths < 1:
            raise ValueError("max_deaths must be 1 or more")
        if window <= 0:
            raise ValueError("the death window must be positive")
        self.max_deaths = max_deaths
        self.window = window
        self._history: dict[str, _History] = {}

    def died(self, uuid: str, now: float, reason: str) -> Restart | GiveUp:
        """Engine ``uuid`` died at ``now`` (seconds, any monotonic clock) for ``reason``."""
        history = self._history.setdefault(uuid, _History())
        history.deaths.append(now)
        while history.deaths and now - history.deaths[0] > self.window:
            history.deaths.popleft()
        if history.given_up is not None:  # a late report: the same verdict, never a restart
            return GiveUp(uuid, history.given_up, self.window, reason)
        if len(history.deaths) >= self.max_deaths:
            history.given_up = len(history.deaths)
            return GiveUp(uuid, history.given_up, self.window, reason)
        history.restarts += 1
        return Restart(uuid, history.restarts, reason)

    def restarts(self, uuid: str) -> int:
        """How many times ``uuid`` was restarted."""
        history = self._history.get(uuid)
        return 0 if history is None else history.restarts
