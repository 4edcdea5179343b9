"""Functions the views send to engines to run there.

They are marked interactive (``__module__ = "__main__"``, ipyparallel's ``@interactive``):
pickled by value, and run with the engine's namespace as their globals, which is where
``push`` puts names and ``pull`` reads them (``parallel.engine._apply.interactive_in``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

__all__ = ["interactive", "map_chunk", "nothing", "pull_names", "pull_one", "push"]

F = TypeVar("F", bound=Callable[..., Any])


def interactive(fn: F) -> F:
    """Run ``fn`` on engines with the engine's namespace as its globals (ipyparallel's)."""
    fn.__module__ = "__main__"
    return fn


@interactive
def push(ns: dict[str, object]) -> None:
    # Named as the view's method: an unpicklable value is reported as push()'s.
    globals().update(ns)


@interactive
def pull_names(names: Sequence[str]) -> list[object]:
    namespace = globals()
    missing = [name for name in names if name not in namespace]
    if missing:
        raise NameError(f"name {missing[0]!r} is not defined on this engine")
    return [namespace[name] for name in names]


@interactive
def pull_one(name: str) -> object:
    namespace = globals()
    if name not in namespace:
        raise NameError(f"name {name!r} is not defined on this engine")
    return namespace[name]


def map_chunk(fn: Callable[..., object], *chunks: Iterable[object]) -> list[object]:
    """``list(map(fn, *chunks))`` on an engine: one task of a map."""
    return list(map(fn, *chunks))


@interactive
def nothing() -> None:
    """What ``use_cloudpickle()`` runs on the engines: there is nothing to switch."""
