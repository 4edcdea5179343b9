"""Which engines may take a task, by its labels and resources (pure, stdlib only).

An engine registers with labels (names) and resources (name -> amount); a task may ask
for labels and resources (``TaskSubmitted.labels``, ``.resources``). Two questions:

* **Can it ever run there?** (:func:`can_hold`) The engine carries every label the task
  names, and has at least the asked amount of every resource it names, in all. A
  resource the engine does not list is 0. A task no live engine can hold fails at once
  as ``unsatisfiable``, with :func:`describe_misfit` saying what was asked and what the
  live engines have.
* **Can it run there now?** (:func:`has_free`) Resources are *consumed*, as dask's
  worker resources are: while a load-balanced task is ASSIGNED to an engine (sent, not
  yet answered) it holds its amounts there, so an engine with ``gpu=1`` holds at most
  one ``gpu=1`` task at a time; a task that fits nowhere *now* stays READY until a
  holder finishes. Direct tasks (a DirectView) are sent whatever is free and hold
  nothing: they name their engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..protocol._engine_traits import format_resources
from ._events import EngineId

__all__ = ["EngineTraits", "can_hold", "describe_misfit", "has_free", "in_use"]

#: Sums of float amounts may miss a total by rounding; this much over still fits.
_SLACK = 1e-12


@dataclass(frozen=True, slots=True)
class EngineTraits:
    """What one engine registered with: its labels and its resources in all."""

    labels: frozenset[str] = frozenset()
    resources: Mapping[str, float] = field(default_factory=dict)


def can_hold(engine: EngineTraits, labels: frozenset[str], resources: Mapping[str, float]) -> bool:
    """Whether ``engine`` carries ``labels`` and has ``resources`` in all (module docstring)."""
    return labels <= engine.labels and all(
        engine.resources.get(name, 0.0) + _SLACK * max(1.0, amount) >= amount
        for name, amount in resources.items()
    )


def in_use(held: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The amounts that the tasks an engine holds (their ``resources``) consume together."""
    used: dict[str, float] = {}
    for resources in held:
        for name, amount in resources.items():
            used[name] = used.get(name, 0.0) + amount
    return used


def has_free(
    engine: EngineTraits, used: Mapping[str, float], resources: Mapping[str, float]
) -> bool:
    """Whether ``engine``, with ``used`` consumed, has ``resources`` free now."""
    return all(
        used.get(name, 0.0) + amount
        <= engine.resources.get(name, 0.0) + _SLACK * max(1.0, engine.resources.get(name, 0.0))
        for name, amount in resources.items()
        if amount > 0
    )


def describe_misfit(
    labels: frozenset[str],
    resources: Mapping[str, float],
    engines: Mapping[EngineId, EngineTraits],
) -> str:
    """One line: what was asked, and what the live ``engines`` have (grouped by traits)."""
    asked = []
    if labels:
        asked.append(f"labels {sorted(labels)}")
    if resources:
        asked.append(f"resources {_amounts(resources)}")
    groups: dict[tuple[tuple[str, ...], str], list[EngineId]] = {}
    for engine_id in sorted(engines):
        traits = engines[engine_id]
        groups.setdefault((tuple(sorted(traits.labels)), _amounts(traits.resources)), []).append(
            engine_id
        )
    have = []
    for (engine_labels, engine_resources), ids in list(groups.items())[:8]:
        which = f"engine{'s' * (len(ids) > 1)} {', '.join(map(str, ids[:8]))}"
        which += ", ..." if len(ids) > 8 else ""
        have.append(f"{which}: labels {list(engine_labels)}, resources {engine_resources}")
    more = f"; and {len(groups) - 8} more kinds" if len(groups) > 8 else ""
    return f"no live engine has {' and '.join(asked)} ({'; '.join(have)}{more})"


def _amounts(resources: Mapping[str, float]) -> str:
    return format_resources(resources) or "none"
