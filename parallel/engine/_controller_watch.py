"""Whether an engine's controller is there, and what the engine does about it (pure).

Theory of operation
-------------------
An engine outlives its controller for a while: a controller killed and restarted with
``--restore`` finds its engines still serving, namespaces intact. The engine pings the
hub every ``ping_interval`` seconds (``engine_ping_request`` on its own hub connection,
``_hub_link``) and feeds what happens to :class:`ControllerWatch`, which says what to do:

- an answer saying the engine is registered: the controller is there;
- an answer saying "re-register" (a restarted hub that does not know it yet, or a hub
  that declared it lost while a network partition cut it off): register again with the
  same uuid, which gives the engine its id back;
- no answer for ``lost_after`` seconds: the controller is silent. The engine keeps
  serving its clients (they talk to it directly) and keeps pinging;
- silent for ``grace`` seconds: give up, and the engine exits cleanly.

No clock is read here: time arrives in the calls.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Action", "ControllerWatch", "WatchConfig"]


class Action(enum.Enum):
    PING = "ping"
    REGISTER = "register"
    #: The controller went silent (log it; keep serving).
    SILENT = "silent"
    #: The controller answers again after a silence.
    BACK = "back"
    #: The grace is over: exit.
    GIVE_UP = "give up"


@dataclass(frozen=True, slots=True)
class WatchConfig:
    ping_interval: float = 1.0
    #: Seconds without an answer after which the controller counts as silent.
    lost_after: float = 3.0
    #: Seconds of silence after which the engine exits (docs/parallel.md says why 300).
    grace: float = 300.0


class ControllerWatch:
    """The engine's view of its controller; mutate only through the methods."""

    def __init__(self, config: WatchConfig, now: float) -> None:
        self.config = config
        self._last_heard = now
        self._last_sent = now  # the registration just happened
        self.silent = False
        #: Waiting for a ``registration_reply`` (re-registering).
        self.registering = False

    def tick(self, now: float) -> list[Action]:
        """What to do at ``now``: ping or re-register when due, report silence, give up."""
        out: list[Action] = []
        quiet = now - self._last_heard
        if not self.silent and quiet > self.config.lost_after:
            self.silent = True
            out.append(Action.SILENT)
        if self.silent and quiet > self.config.grace:
            return [*out, Action.GIVE_UP]
        if now - self._last_sent >= self.config.ping_interval:
            self._last_sent = now
            out.append(Action.REGISTER if self.registering else Action.PING)
        return out

    def next_due(self, now: float) -> float:
        """Seconds until :meth:`tick` may have something to do."""
        return max(0.0, self._last_sent + self.config.ping_interval - now)

    def answered(self, now: float, *, registered: bool) -> list[Action]:
        """The hub answered a ping; ``registered``: it knows this engine as live."""
        out = self._heard(now)
        if not registered and not self.registering:
            self.registering = True
            self._last_sent = now
            out.append(Action.REGISTER)
        elif registered:
            self.registering = False
        return out

    def registered(self, now: float) -> list[Action]:
        """The hub answered a (re-)registration."""
        self.registering = False
        return self._heard(now)

    def _heard(self, now: float) -> list[Action]:
        self._last_heard = now
        if self.silent:
            self.silent = False
            return [Action.BACK]
        return []
