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

Addressed requests (the parallel engines, issue 12). A date leaves a window open and
depends on clocks, and engines sharing a cluster's key would each take a message
captured on another. So a process may also have an *instance*: a random id made at each
start that its Loom peers learn (an engine's registration carries it) and name in the
signed header of every request they send it (:data:`TARGET_KEY`). A request naming
another instance (another engine, or an earlier start of this one) is refused; one
naming this instance is taken whatever its date (no clock involved); one naming none
(a Jupyter client attaching to an engine as a kernel) falls back to the date check.
:func:`refusal` decides all three. The controller's hub has an instance too (in the
cluster file, new at each start); as engines and clients that outlived a restore still
name the old one, the hub judges a request naming another instance by its date
(``strict=False``) instead of refusing it.

Pure: no clock read here; the kernel passes its start time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DEFAULT_SKEW",
    "OUTLIVED_RESTART",
    "TARGET_KEY",
    "address_to",
    "dated_before",
    "refusal",
    "replay_skew",
]

#: Seconds a message may be dated before the kernel started and still be taken: covers
#: requests a client queued while the kernel restarted (libzmq delivers them to the new
#: kernel) and clock differences between client and kernel hosts.
DEFAULT_SKEW = 5.0
#: The header key naming the instance a request is for (a Loom extension; other peers
#: neither send nor read it, and a header's unknown keys are kept as they are).
TARGET_KEY = "loom_target"
#: What the refusal of a message that names an earlier instance and is dated before this
#: start says (``strict=False``): a peer that outlived a restart, whose queued messages
#: arrive after it (the hub logs those apart, ``parallel/controller/_hub.py``).
OUTLIVED_RESTART = "names an earlier instance"


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


def address_to(header: dict[str, Any], instance: str) -> None:
    """Name ``instance`` in a request's ``header`` (before it is signed); "" (a peer that
    told none, an older engine): leave the header as it is."""
    if instance:
        header[TARGET_KEY] = instance


def refusal(
    header: Mapping[str, Any],
    *,
    not_before: float | None,
    instance: str | None,
    strict: bool = True,
) -> str | None:
    """Why a verified message must be refused as a replay, or None to take it.

    ``instance``: this process's instance id (None: it has none, names are not checked);
    ``not_before``: epoch seconds before which an unaddressed message is refused (None: no
    date check). See the module docstring for the rules. ``strict=False`` (the hub): a
    message naming another instance is not refused for that alone but judged by its date,
    as one naming none (peers that predate a controller's restore name the old one).
    """
    target = header.get(TARGET_KEY)
    if instance is not None and target is not None:
        if target == instance:
            return None
        if strict:
            return (
                f"message is for instance {target!r}, not this one ({instance!r}): replayed"
                " from another engine, or from before a restart"
            )
    if not_before is not None and dated_before(header.get("date"), not_before):
        # (Here a named instance is another one: strict=False.)
        named = target is not None and instance is not None
        earlier = f" {OUTLIVED_RESTART} ({target!r})," if named else ""
        return (
            f"message{earlier} dated {header.get('date')} is older than this process's start "
            "(a replay from before a restart, or a client clock behind; LOOM_REPLAY_SKEW)"
        )
    return None
