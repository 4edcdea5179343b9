"""When the hub link sends the records it holds, and which sent batches the hub has: pure.

The engine's ``loom-hub-link`` thread (``_hub_link``) asks :class:`RecordWindow` how long
it may sleep before sending what accumulated, and keeps its sent batches in
:class:`Unacked` until the hub says they are committed. No clocks, sockets or threads
here: the thread passes the time in, so the tests give exact lists.

Why a window: on a 2-core machine every wake of a second Python thread is a context
switch and a GIL hand-off, and every batch is a message the controller receives, commits
and (for some) answers. Sending what ``window`` seconds brought, in one message, makes
those costs per window instead of per task; the price is the durability window: a record
still in the engine when it is SIGKILLed is lost (``docs/architecture.md``, "Task
records"). So the window is only that long while the engine is busy: once its replies
stop for a quiet time (``quiet``, or longer, up to the window, while its replies come
in a stream: :class:`QuietFlush`), the main thread asks for the batch.
``durability="sync"`` records (``urgent``) never wait, and neither does a batch past
``max_records`` or ``max_bytes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["QUIET_FACTOR", "QUIET_SPAN", "QuietFlush", "RecordWindow", "Unacked", "WindowConfig"]

T = TypeVar("T")


@dataclass(frozen=True)
class WindowConfig:
    #: Seconds the first record of a batch waits for others, at most.
    window: float = 0.1
    #: Seconds without a new reply after which the engine's main thread asks for the
    #: batch at once (:class:`QuietFlush`): a lone task's records do not wait the window.
    #: While replies come in a stream the quiet time follows their rate, up to the window.
    quiet: float = 0.025
    #: A batch this long goes at once.
    max_records: int = 256
    #: A batch whose buffers reach this many bytes goes at once (and asks for its ack).
    max_bytes: int = 1 << 20


@dataclass
class RecordWindow:
    """Decides when to send: ``due`` gives the seconds to wait (0: now, inf: nothing).

    A window opens at the first record the thread sees, or at a send that its end or a
    full batch caused (:meth:`sent` with the time): an engine in a stream of replies
    then sends a batch at the end of each window, and the records that come meanwhile
    need not wake the thread (it is not idle: ``due`` gives the window's end even with
    nothing held). Such a *ticking* window that ends with nothing held closes, and the
    next record wakes the thread again. Per batch of a stream that is one wake of the
    thread, not two (the first record's, then the window's end). A send the engine asked
    for (it went quiet) or a ``sync`` record caused closes the window: nothing follows."""

    config: WindowConfig = field(default_factory=WindowConfig)
    #: When the current window opened (None: none is open, the thread may sleep).
    opened: float | None = None

    def due(self, now: float, count: int, nbytes: int, *, urgent: bool = False) -> float:
        if count <= 0:
            if self.opened is not None and now < self.opened + self.config.window:
                return self.opened + self.config.window - now  # ticking: wait for its end
            self.opened = None
            return math.inf
        if self.opened is None:
            self.opened = now
        if urgent or count >= self.config.max_records or nbytes >= self.config.max_bytes:
            return 0.0
        return max(0.0, self.opened + self.config.window - now)

    def sent(self, now: float | None = None) -> None:
        """What was held went out. ``now``: a window's end or a full batch sent it, so a
        new window opens now (records may be coming); None: the engine asked for it (it
        went quiet) or it was urgent, and the next record opens a new window."""
        self.opened = now


#: How much longer than the latest gap between two replies the quiet time is: an
#: engine's replies in a steady stream (a broadcast in a loop) jitter around their mean.
QUIET_FACTOR = 2.0
#: The quiet time follows the reply rate up to this many times ``quiet`` (and never past
#: the window): 4 x 25 ms = the 100 ms window by default.
QUIET_SPAN = 4.0


@dataclass
class QuietFlush:
    """The engine's main thread asks for the batch once replies stop for a quiet time.

    After a lone reply (the first, or one more than ``longest`` after the one before) the
    quiet time is ``quiet``: a lone task's records go within it, not at the window's end.
    After a reply that came within ``longest`` of the one before (a stream) it is
    ``QUIET_FACTOR`` times that gap, at least ``quiet`` and at most ``longest``
    (``min(window, QUIET_SPAN * quiet)``: 100 ms by default), so a steady stream leaves
    its records to the window, a batch of many tasks, even when its replies are further
    apart than ``quiet`` (16 engines on 2 cores answer a broadcast in a loop every 25-35
    ms: with a fixed 25 ms every task went alone, a wake and a message each).

    ``covered``: the hub link's window alone bounds a stream's records as tightly (the
    window is no longer than ``longest``: the default), since every record goes at the
    end of the window it came in, at most ``window`` after it. Then a stream's reply arms
    no timer and moves none: timing a stream's quiet time on the engine's loop woke its
    main thread about once every two replies (16 engines answering a broadcast in a loop)
    for nothing, since the window's end sent the records anyway. A lone reply's timer
    still runs, and fires at its own time whatever replies followed it. The price: the
    last task of a stream waits for the window's end, up to ``longest`` after its reply,
    instead of twice the gap (docs/parallel.md, "The loss window"). One timer at a time:
    :meth:`replied` says when to arm it, :meth:`fired` whether to send (None) or when to
    look again. Time comes in as arguments (the loop's clock)."""

    quiet: float
    #: The longest quiet time (the window, or ``QUIET_SPAN * quiet`` if shorter); at
    #: most ``quiet`` (the default): a fixed quiet time.
    longest: float = 0.0
    #: The window bounds a stream's records (see above): its replies need no timer.
    covered: bool = False
    #: When the latest reply not yet asked for was recorded (None: none is waiting).
    last: float | None = None
    #: When the latest reply was recorded, asked for or not (to measure the next gap).
    previous: float | None = None
    #: The quiet time the latest reply set.
    wait: float = 0.0
    armed: bool = False

    @classmethod
    def for_window(cls, config: WindowConfig) -> QuietFlush:
        longest = min(config.window, QUIET_SPAN * config.quiet)
        return cls(config.quiet, longest, covered=config.window <= max(longest, config.quiet))

    def __post_init__(self) -> None:
        self.longest = max(self.longest, self.quiet)
        self.wait = self.quiet

    def replied(self, now: float) -> float | None:
        """A reply's record was queued: the delay of the timer to arm, or None (armed,
        or no timer needed)."""
        gap = None if self.previous is None else now - self.previous
        self.previous = now
        if gap is not None and gap <= self.longest:  # a stream: follow its rate
            if self.covered:  # the window's end sends it in time: nothing to time here
                return None
            self.wait = min(self.longest, max(self.quiet, QUIET_FACTOR * gap))
        else:  # a lone reply
            self.wait = self.quiet
        self.last = now
        if self.armed:
            return None
        self.armed = True
        return self.wait

    def fired(self, now: float) -> float | None:
        """The timer fired: None to ask for the batch now, or the delay to arm it again."""
        if self.last is not None and now < self.last + self.wait:
            return self.last + self.wait - now
        self.armed = False
        self.last = None
        return None


class Unacked(Generic[T]):
    """Sent batches the hub has not confirmed, by sequence number (1, 2, ...).

    The hub commits batches in the order they were sent on the link's socket and says so
    either in a ``record_reply`` (a batch that asked: sync records, large buffers) or in
    its answer to the next ping (``records``: the first and last number of the batches
    it committed without a gap), so a small batch costs the hub no reply and the link no
    wake. Batches older than that range (sent to a controller that died) stay until a
    re-registration sends them again."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._batches: dict[int, list[T]] = {}
        self._last = 0

    def add(self, batch: list[T]) -> tuple[int, list[list[T]]]:
        """Number a new batch; also the oldest batches dropped to stay under ``limit``
        records (a controller gone for long)."""
        self._last += 1
        self._batches[self._last] = batch
        dropped = []
        count = sum(len(b) for b in self._batches.values())
        while count > self.limit and len(self._batches) > 1:
            oldest = next(iter(self._batches))
            dropped.append(self._batches.pop(oldest))
            count -= len(dropped[-1])
        return self._last, dropped

    def acked(self, seq: int) -> list[T]:
        """Batch ``seq`` is committed (its own reply): its items."""
        return self._batches.pop(seq, [])

    def acked_range(self, first: int, last: int) -> list[T]:
        """Batches ``first`` to ``last`` are committed (a ping's answer: what this hub
        committed of this link's batches without a gap): their items, in order."""
        done = [s for s in self._batches if first <= s <= last]
        return [item for s in done for item in self._batches.pop(s)]

    def take_all(self) -> list[list[T]]:
        """Every unconfirmed batch, in order, to send again (after a re-registration)."""
        batches = list(self._batches.values())
        self._batches.clear()
        return batches

    def __len__(self) -> int:
        return sum(len(b) for b in self._batches.values())
