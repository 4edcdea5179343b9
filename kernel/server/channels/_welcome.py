"""When to greet iopub subscriptions with ``iopub_welcome`` (messaging spec 5.5): pure.

An XPUB socket cannot address one subscriber: a welcome reaches every client whose
subscription matches its topic, which for the usual empty subscription is every client.
Greeting each subscription at once let anyone who can reach the port (no key needed to
subscribe) make every client receive one message per subscription it sent: 2,000
subscriptions meant 2,000 welcomes per client.

So greetings are paced: the first subscription after a quiet spell is greeted at once
(a client waiting for its welcome, as the parallel client does, waits no longer than
before); subscriptions that follow within ``interval`` of the last greeting are greeted
together when the interval is over, one welcome per distinct topic. Every subscriber is
still greeted after it subscribed, and a flood of subscriptions costs each client at
most ``max_topics`` welcomes per ``interval``, whatever its size. Distinct topics beyond
``max_topics`` in one batch are not greeted (Jupyter clients all subscribe to the empty
topic, which is always kept); the caller is told how many, to log it.
"""

from __future__ import annotations

__all__ = ["MAX_WELCOME_TOPICS", "WELCOME_INTERVAL", "WelcomePacer"]

#: Subscriptions this soon after a greeting (seconds) wait to be greeted together.
WELCOME_INTERVAL = 0.1
#: At most this many distinct topics are greeted per batch.
MAX_WELCOME_TOPICS = 8


class WelcomePacer:
    """Collects subscriptions and says which topics to greet when; the caller owns the clock."""

    def __init__(
        self, interval: float = WELCOME_INTERVAL, max_topics: int = MAX_WELCOME_TOPICS
    ) -> None:
        self.interval = interval
        self.max_topics = max_topics
        self._pending: dict[bytes, None] = {}  # insertion-ordered set of topics
        self._last_greeting = float("-inf")
        #: Distinct topics left ungreeted because a batch was full, since the last look.
        self.skipped = 0

    @property
    def is_pending(self) -> bool:
        return bool(self._pending)

    def subscribed(self, topic: bytes) -> None:
        """A subscription to ``topic`` arrived (duplicates of a pending topic are free)."""
        if topic in self._pending:
            return
        if len(self._pending) < self.max_topics:
            self._pending[topic] = None
        elif topic == b"":
            # The topic every Jupyter client uses always gets its greeting.
            self._pending.pop(next(reversed(self._pending)))
            self._pending[topic] = None
            self.skipped += 1
        else:
            self.skipped += 1

    def next_in(self, now: float) -> float | None:
        """Seconds until pending greetings are due (0: now), or None if none are pending."""
        if not self._pending:
            return None
        return max(0.0, self._last_greeting + self.interval - now)

    def due(self, now: float) -> list[bytes]:
        """The topics to greet now, each once; they are no longer pending afterwards."""
        if not self._pending or now < self._last_greeting + self.interval:
            return []
        topics = list(self._pending)
        self._pending.clear()
        self._last_greeting = now
        return topics
