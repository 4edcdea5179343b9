"""Functions the views send to engines to run there.

They are marked interactive (``__module__ = "__main__"``, ipyparallel's ``@interactive``):
pickled by value, and run with the engine's namespace as their globals, which is where
``push`` puts names and ``pull`` reads them (``parallel.engine._apply.interactive_in``).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

__all__ = [
    "Reference",
    "call_with_references",
    "has_references",
    "interactive",
    "map_chunk",
    "nothing",
    "pull_names",
    "pull_one",
    "push",
    "require",
]

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


class Reference:
    """A name in the engine's namespace, passed as an argument (ipyparallel's):
    ``view.apply(f, Reference("a"))`` calls ``f(a)`` with each engine's own ``a``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"Reference() takes a variable name, not {name!r:.80}")
        self.name = name

    def __repr__(self) -> str:
        return f"Reference({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reference) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Reference", self.name))

    def __reduce__(self) -> tuple[type[Reference], tuple[str]]:
        return (Reference, (self.name,))


def has_references(args: Sequence[object], kwargs: dict[str, Any]) -> bool:
    """Whether a call passes any :class:`Reference` (then it goes through
    :func:`call_with_references`)."""
    return any(type(a) is Reference for a in args) or any(
        type(v) is Reference for v in kwargs.values()
    )


@interactive
def call_with_references(
    fn: Callable[..., object], args: Sequence[object], kwargs: dict[str, Any]
) -> object:
    """``fn(*args, **kwargs)`` on an engine, each :class:`Reference` replaced by the value
    of its name in the engine's namespace (NameError, naming it, if there is none)."""
    # Imported here: this function runs with the engine's namespace as its globals.
    from parallel.client._remote import Reference

    namespace = globals()

    def value(arg: object) -> object:
        if type(arg) is not Reference:
            return arg
        if arg.name not in namespace:
            raise NameError(f"name {arg.name!r} is not defined on this engine (a Reference)")
        return namespace[arg.name]

    return fn(*[value(a) for a in args], **{k: value(v) for k, v in kwargs.items()})


def require(*objects: object, **mapping: object) -> Callable[[F], F]:
    """Decorator (ipyparallel's): make what a function needs available on the engine
    before it runs there. Modules, by name (``"numpy"``, ``"os.path"``) or as module
    objects, are imported; other objects (functions, classes, values: ``name=value`` or
    objects with a ``__name__``) travel with the task. Both are put in the function's
    globals and the engine's namespace. A module an engine lacks fails the task with
    its ``ModuleNotFoundError`` (ipyparallel would try another engine instead; a
    load-balanced view with ``retries`` does that).
    """
    modules: list[str] = []
    values: dict[str, object] = dict(mapping)
    for obj in objects:
        if isinstance(obj, str):
            modules.append(obj)
        elif isinstance(obj, types.ModuleType):
            modules.append(obj.__name__)
        elif isinstance(getattr(obj, "__name__", None), str):
            values[obj.__name__] = obj  # type: ignore[attr-defined]
        else:
            raise TypeError(
                f"require() takes module names, modules, or named objects (functions,"
                f" classes), not {obj!r:.80}; give values as require(name=value)"
            )

    def decorate(fn: F) -> F:
        @interactive
        @functools.wraps(fn)
        def required(*args: Any, **kwargs: Any) -> Any:
            targets = [globals()]
            own = getattr(fn, "__globals__", None)
            if isinstance(own, dict) and own is not targets[0]:
                targets.append(own)
            for module in modules:
                top = __import__(module)  # ``import a.b`` binds ``a``, as here
                for ns in targets:
                    ns[module.partition(".")[0]] = top
            for ns in targets:
                ns.update(values)
            return fn(*args, **kwargs)

        return required  # type: ignore[return-value]

    return decorate
