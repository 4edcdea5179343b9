"""Reply sequence numbers: telling a lost reply (a gap) from a late one (a delay).

An engine numbers the shell replies it sends to each client session, 1, 2, 3...
(``loom_seq`` in the reply's metadata; ``kernel.server``). Over one connection ZeroMQ
delivers in order, so a client that has seen reply ``n`` expects ``n + 1`` next:

- ``n + 1``: in order;
- more: the replies in between were lost (sent to nobody, dropped by a peer's limit,
  a transport that reconnected and lost its queue): a **gap**, which the client reports
  at once instead of waiting for replies that will never come;
- ``n`` or less: a reply seen already (a duplicate), dropped.

A reply without a number (another kernel, an older engine) is not judged. The first
number a link sees is its starting point, whatever it is: an engine that re-attached
(after a partition, or to a restored controller) keeps counting for this client's
session, and a replacement engine starts again at 1; either way the client made a new
link, with a new :class:`ReplySequence`. (So a loss of the very first replies on a link
is not seen; every later one is.) Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ReplySequence", "Verdict"]

Verdict = Literal["in-order", "gap", "duplicate", "unnumbered"]


@dataclass(slots=True)
class ReplySequence:
    """The replies seen from one engine, by number; see the module docstring."""

    #: The highest number seen (0: none yet).
    last: int = 0
    #: How many replies were found missing, in all gaps so far.
    missing: int = 0
    #: Replies known lost already, their requests failed (``excuse``): the next gap, up to
    #: this wide, is expected and not reported.
    excused: int = 0

    def excuse(self, count: int) -> None:
        """``count`` replies will never arrive, and their requests were failed already
        (a direct shell that broke): the engine answers its requests in order, so they
        are all numbered before the next reply this client gets, and the gap they leave
        there is no news. At most that wide: a request that never reached the engine got
        no number."""
        self.excused += count

    def observe(self, seq: object) -> Verdict:
        """Judge the reply numbered ``seq`` (its metadata's ``loom_seq``)."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            return "unnumbered"
        if self.last == 0:  # the starting point (module docstring)
            self.last = seq
            return "in-order"
        if seq <= self.last:
            return "duplicate"
        gap = seq - self.last - 1
        excused, self.excused = self.excused, 0
        verdict: Verdict = "in-order" if gap <= excused else "gap"
        self.missing += max(0, gap - excused)
        self.last = seq
        return verdict
