"""Load-balancing schemes: which of several engines gets the next task.

A scheme is a pure function ``(loads, rng) -> index``. ``loads[i]`` is the
number of tasks outstanding on the i-th candidate engine, and the candidates
are always listed in **least-recently-used order**: the engine that was sent a
task longest ago comes first, engines never sent a task come before all others,
by engine id. Because the order carries the history, ``lru`` fits the same
signature as the others: it just takes the head of the line.

Randomness comes only from the ``random.Random`` passed in, so a seeded
generator makes every choice reproducible. ``loads`` is never empty (the
scheduler only asks when there is a choice); an empty one raises ``ValueError``.

The ideas are ipyparallel's (``ipyparallel/controller/task_scheduler.py``,
"Chooser functions"); ``weighted`` uses milder weights, see its docstring.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Final

__all__ = ["SCHEMES", "Scheme", "leastload", "lru", "plainrandom", "twobin", "weighted"]

#: ``(loads, rng) -> index into loads`` (see the module docstring).
Scheme = Callable[[Sequence[int], random.Random], int]


def _require_candidates(loads: Sequence[int]) -> int:
    if not loads:
        raise ValueError("a scheme needs at least one candidate engine")
    return len(loads)


def leastload(loads: Sequence[int], rng: random.Random) -> int:
    """The least loaded engine; on a tie, the lowest index, i.e. the least recently used.

    Never consumes ``rng``.
    """
    _require_candidates(loads)
    return min(range(len(loads)), key=loads.__getitem__)


def lru(loads: Sequence[int], rng: random.Random) -> int:
    """The least recently used engine (index 0), whatever the loads. Never consumes ``rng``."""
    _require_candidates(loads)
    return 0


def plainrandom(loads: Sequence[int], rng: random.Random) -> int:
    """A uniformly random engine, whatever the loads."""
    return rng.randrange(_require_candidates(loads))


def twobin(loads: Sequence[int], rng: random.Random) -> int:
    """Draw two engines at random (with replacement) and take the less recently used.

    The loads are ignored; only the LRU order matters.
    """
    n = _require_candidates(loads)
    return min(rng.randrange(n), rng.randrange(n))


def weighted(loads: Sequence[int], rng: random.Random) -> int:
    """Draw two engines with weight ``1 / (load + 1)`` and take the less loaded one.

    On equal loads the first drawn wins. ipyparallel weighs ``1 / (load + 1e-6)``,
    which makes an idle engine a million times likelier than a busy one, so that
    the scheme is leastload in all but name; ``1 / (load + 1)`` keeps it random:
    an engine with ``k`` tasks is drawn ``k + 1`` times less often than an idle one.
    """
    n = _require_candidates(loads)
    first, second = rng.choices(range(n), weights=[1 / (load + 1) for load in loads], k=2)
    return second if loads[second] < loads[first] else first


#: The schemes by the names a controller's configuration uses.
SCHEMES: Final[Mapping[str, Scheme]] = {
    "leastload": leastload,
    "lru": lru,
    "plainrandom": plainrandom,
    "twobin": twobin,
    "weighted": weighted,
}
