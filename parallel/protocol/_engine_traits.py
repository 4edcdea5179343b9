"""Engine labels and resources: parsing, checking and printing them (pure, stdlib only).

An engine may carry **labels** (names: ``bigmem``, ``x86``) and **resources** (named
amounts: ``gpu=1``, ``mem=64G``). Load-balanced tasks may ask for labels (the engine must
carry every one) and resources (the engine must have that much free: a task holds its
resources from the moment it is sent to the engine until the engine answers). The
scheduler decides with plain ``frozenset[str]`` and ``dict[str, float]``; this module
turns what users type into those, and back into text.

Where they come from, in order: ``loom engine --label A --resources gpu=1,mem=64G``, else
the environment of the engine process (``LOOM_ENGINE_LABELS=A,B``,
``LOOM_ENGINE_RESOURCES=gpu=1,mem=64G``), which is how ``Cluster(labels=...,
resources=...)`` and the launchers hand them on. They travel in the engine's
``registration_request`` and in its engine record (``labels``: a list of strings,
``resources``: an object of numbers; both absent from older peers, meaning none).

Amounts are non-negative numbers, optionally with a unit: ``K``, ``M``, ``G``, ``T``,
``P`` (also ``Ki``, ``KiB``...) are powers of 1024, as in Slurm's ``--mem=64G``;
``KB``, ``MB``, ``GB``, ``TB``, ``PB`` are powers of 1000, as in dask's ``parse_bytes``.
Every error is a :class:`ValueError` whose message is one line naming the bad part.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

__all__ = [
    "LABELS_ENV",
    "RESOURCES_ENV",
    "add_traits_arguments",
    "format_amount",
    "format_resources",
    "labels_from",
    "parse_amount",
    "parse_labels",
    "parse_resources",
    "registration_traits",
    "resources_from",
    "set_traits_env",
    "traits_env",
    "traits_from_env",
]

#: The environment variables an engine reads when its command line names none.
LABELS_ENV = "LOOM_ENGINE_LABELS"
RESOURCES_ENV = "LOOM_ENGINE_RESOURCES"

#: A label or resource name: a letter or underscore, then letters, digits, ``_ . -``.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
_AMOUNT = re.compile(
    r"^(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*(?P<unit>[A-Za-z]*)$"
)
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}
_T = TypeVar("_T", dict[str, float], set[str])
#: Most labels or resources one engine or task may name (a bound on what peers send).
MAX_TRAITS = 64


def _unit_factor(unit: str) -> int | None:
    """The factor of ``unit`` (module docstring), or ``None`` if it is not one."""
    upper = unit.upper()
    if upper in ("", "B"):
        return 1
    letter, rest = upper[0], upper[1:]
    if letter not in _POWERS:
        return None
    if rest in ("", "I", "IB"):
        return int(1024 ** _POWERS[letter])
    if rest == "B":
        return int(1000 ** _POWERS[letter])
    return None


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{what} {name!r} is not a name (a letter or _, then letters, digits, _ . -)"
        )
    return name


def parse_amount(text: object, name: str = "amount") -> float:
    """A resource amount: a number, or text like ``"64G"``; :class:`ValueError` if bad."""
    if isinstance(text, bool):
        raise ValueError(f"resource {name}: {text!r} is not an amount (e.g. 1, 0.5, 64G)")
    if isinstance(text, int | float):
        value = float(text)
    elif isinstance(text, str):
        match = _AMOUNT.match(text.strip())
        factor = _unit_factor(match["unit"]) if match else None
        if match is None or factor is None:
            raise ValueError(f"resource {name}: {text!r} is not an amount (e.g. 1, 0.5, 64G)")
        value = float(match["number"]) * factor
    else:
        raise ValueError(f"resource {name}: {text!r} is not an amount (e.g. 1, 0.5, 64G)")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"resource {name}: {text!r} must be a finite amount of 0 or more")
    return value


def parse_resources(text: str) -> dict[str, float]:
    """``"gpu=1,mem=64G"`` -> ``{"gpu": 1.0, "mem": 68719476736.0}``; "" -> ``{}``."""
    resources: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, equals, amount = (s.strip() for s in part.partition("="))
        if not equals:
            raise ValueError(f"resources: {part!r} is not NAME=AMOUNT (e.g. gpu=1,mem=64G)")
        _check_name(name, "resource")
        if name in resources:
            raise ValueError(f"resources: {name!r} is named twice")
        resources[name] = parse_amount(amount, name)
    return _bounded(resources, "resources")


def resources_from(value: object) -> dict[str, float]:
    """Resources from a mapping (amounts may be numbers or text), text, or ``None``."""
    if value is None:
        return {}
    if isinstance(value, str):
        return parse_resources(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"resources must be a dict like {{'gpu': 1}}, not {value!r}")
    parsed = {_check_name(k, "resource"): parse_amount(v, k) for k, v in value.items()}
    return _bounded(parsed, "resources")


def parse_labels(values: Iterable[str]) -> frozenset[str]:
    """Labels from ``--label`` values, each one name or several separated by commas."""
    labels = {
        _check_name(part.strip(), "label")
        for value in values
        for part in value.split(",")
        if part.strip()
    }
    return frozenset(_bounded(labels, "labels"))


def labels_from(value: object) -> frozenset[str]:
    """Labels from a list of names, one name, comma-separated text, or ``None``."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return parse_labels([value])
    if not isinstance(value, Iterable) or isinstance(value, Mapping | bytes):
        raise ValueError(f"labels must be a list of names, not {value!r}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"labels must be a list of names, not {value!r}")
    return parse_labels(items)


def _bounded(traits: _T, what: str) -> _T:
    if len(traits) > MAX_TRAITS:
        raise ValueError(f"{what}: {len(traits)} named, at most {MAX_TRAITS}")
    return traits


def format_amount(value: float) -> str:
    """``68719476736.0`` -> ``"64G"``, ``2e9`` -> ``"2GB"``, ``1.0`` -> ``"1"``, ``0.5``
    -> ``"0.5"``: the unit that gives a whole number below 10000, binary ones first."""
    if value != int(value):
        return repr(value)
    whole = int(value)
    for base, suffix in ((1024, ""), (1000, "B")):
        for letter in "PTGMK":
            factor = int(base ** _POWERS[letter])
            if whole >= factor and whole % factor == 0 and whole // factor < 10000:
                return f"{whole // factor}{letter}{suffix}"
    return str(whole) if whole < 10**15 else repr(value)


def format_resources(resources: Mapping[str, float]) -> str:
    """``{"gpu": 1.0, "mem": 68719476736.0}`` -> ``"gpu=1,mem=64G"`` (sorted by name)."""
    return ",".join(f"{name}={format_amount(resources[name])}" for name in sorted(resources))


def traits_env(labels: Iterable[str], resources: Mapping[str, float]) -> dict[str, str]:
    """The environment that gives an engine these labels and resources (empty ones unset)."""
    env: dict[str, str] = {}
    if labels:
        env[LABELS_ENV] = ",".join(sorted(labels))
    if resources:
        env[RESOURCES_ENV] = format_resources(resources)
    return env


def traits_from_env(env: Mapping[str, str]) -> tuple[frozenset[str], dict[str, float]]:
    """The labels and resources ``LOOM_ENGINE_LABELS``/``_RESOURCES`` in ``env`` give."""
    try:
        labels = parse_labels([env.get(LABELS_ENV, "")])
    except ValueError as exc:
        raise ValueError(f"{LABELS_ENV}: {exc}") from None
    try:
        resources = parse_resources(env.get(RESOURCES_ENV, ""))
    except ValueError as exc:
        raise ValueError(f"{RESOURCES_ENV}: {exc}") from None
    return labels, resources


def set_traits_env(
    env: dict[str, str] | os._Environ[str], labels: Iterable[str], resources: str | None
) -> None:
    """Apply ``--label``/``--resources`` (command-line text) to ``env``, checked first:
    they replace what ``env`` said; ``ValueError`` (one line) if either is bad."""
    parsed_labels = parse_labels(labels)
    parsed_resources = None if resources is None else parse_resources(resources)
    if parsed_labels:
        env[LABELS_ENV] = ",".join(sorted(parsed_labels))
    if parsed_resources is not None:
        env[RESOURCES_ENV] = format_resources(parsed_resources)
    traits_from_env(env)  # what was there already must parse too


def registration_traits(env: Mapping[str, str]) -> dict[str, object]:
    """The ``labels`` and ``resources`` of an engine's ``registration_request``."""
    labels, resources = traits_from_env(env)
    return {"labels": sorted(labels), "resources": resources}


def add_traits_arguments(parser: argparse.ArgumentParser) -> None:
    """``--label NAME`` (repeatable, or ``a,b``) and ``--resources NAME=AMOUNT,...``."""
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="NAME",
        help="a label the engine(s) carry (repeat, or a,b); load-balanced tasks may ask for it",
    )
    parser.add_argument(
        "--resources",
        default=None,
        metavar="NAME=AMOUNT,...",
        help="what the engine(s) have, e.g. gpu=1,mem=64G (K/M/G/T: powers of 1024)",
    )
