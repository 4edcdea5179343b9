"""Refusing messages captured before a kernel (re)started: the header date check.

A Session's replay history (``_signing``) lives in memory, so a kernel restarted with
the same key (jupyter_client's restart keeps the connection file) would accept again a
signed message captured before the restart: ipykernel re-executes it. Clients cannot be
asked for anything new (jupyter_client sends what it sends), but every message carries
a signed ``date`` in its header. So a kernel refuses messages dated before its own start
minus a small allowance (:data:`DEFAULT_SKEW`, ``LOOM_REPLAY_SKEW``):

- what it stops: a message captured more than the allowance before the restart and
  replayed to the new kernel (which has not seen its signature);
- what it does not: a message captured in the last ``skew`` seconds before the restart
  (the window the allowance leaves open); a message with no parseable date (no Jupyter
  client sends one, and a signed header cannot be altered to drop it); a client whose
  clock is behind the kernel's by more than ``skew`` has every message refused (logged
  as a replay), so clocks must agree to within the allowance.

Pure: no clock read here; the kernel passes its start time.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

__all__ = ["DEFAULT_SKEW", "dated_before", "replay_skew"]

#: Seconds a message may be dated before the kernel started and still be taken: covers
#: requests a client queued while the kernel restarted (libzmq delivers them to the new
#: kernel) and clock differences between client and kernel hosts.
DEFAULT_SKEW = 5.0


def replay_skew(environ: dict[str, str] | None = None) -> float:
    """The allowance from ``LOOM_REPLAY_SKEW`` (seconds, >= 0), else :data:`DEFAULT_SKEW`;
    ``ValueError`` with a one-line message for a bad value."""
    value = (os.environ if environ is None else environ).get("LOOM_REPLAY_SKEW", "")
    if not value.strip():
        return DEFAULT_SKEW
    try:
        skew = float(value)
    except ValueError:
        raise ValueError(f"LOOM_REPLAY_SKEW must be a number of seconds, got {value!r}") from None
    if not skew >= 0:  # also refuses nan
        raise ValueError(f"LOOM_REPLAY_SKEW must be >= 0, got {value!r}")
    return skew


def dated_before(date: object, not_before: float) -> bool:
    """Whether a header's ``date`` is earlier than ``not_before`` (epoch seconds).

    False when it cannot tell (no date, not ISO 8601): see the module docstring. A
    date without a UTC offset is taken as UTC (the spec asks for UTC).
    """
    if not isinstance(date, str):
        return False
    try:
        when = datetime.fromisoformat(date)
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() < not_before
