"""Calls an engine has unpickled before, kept by their pickle's bytes (pure, no I/O).

Theory of operation
-------------------
``rc[:].apply_sync(f)`` in a loop sends the same call again and again: the client
cloudpickles ``f`` by value each time (it cannot know that ``f``'s globals did not
change), and the bytes come out the same. Unpickling them on the engine rebuilds the
function (its code object, globals and defaults: ~30 us, the largest single step of a
trivial task) and ``interactive_in`` rebinds it to the engine's namespace (~4 us).

Equal bytes make an equal call, so the engine may hand out the call it built last time,
*if* nothing the call holds can remember a task: a reused object that a task changed
would carry the change into the next task, where a fresh unpickle would not. So only
calls that cannot be changed are kept (:func:`reusable`):

- one pickle frame and no out-of-band buffers (those are views of received frames), of
  at most :data:`MAX_KEY` bytes;
- the arguments, keyword arguments, defaults and keyword defaults hold only values of
  immutable built-in types (``int``, ``float``, ``complex``, ``str``, ``bytes``,
  ``bool``, ``None``, and tuples and frozensets of them);
- the function is a plain function of ``__main__`` (the only kind ``interactive_in``
  rebinds, whose own pickled globals are then only a source of names the namespace
  lacks), with no closure (cells can be rebound with ``nonlocal``) and no attributes
  (``f.calls += 1``), whose pickled globals it reads are such values or modules.

A kept call is the *bound* function (globals: the engine's namespace), the arguments,
and the names ``interactive_in`` copied into the namespace: a hit copies those again
where the namespace lacks them (a task may have deleted one), as a fresh unpickle would.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["MAX_ENTRIES", "MAX_KEY", "CachedCall", "CallCache", "global_names", "reusable"]

#: Calls kept at most (the oldest is forgotten first).
MAX_ENTRIES = 16
#: Largest pickle frame kept as a key (bytes): a trivial call's is a few hundred.
MAX_KEY = 16 * 1024

_FROZEN = frozenset({int, float, complex, str, bytes, bool, type(None)})


def _frozen(value: object, depth: int = 0) -> bool:
    """Whether ``value`` is an immutable built-in value all the way down (a bounded look)."""
    kind = type(value)
    if kind in _FROZEN:
        return True
    if (kind is tuple or kind is frozenset) and depth < 4:
        return all(_frozen(item, depth + 1) for item in value)  # type: ignore[attr-defined]
    return False


def global_names(code: types.CodeType) -> set[str]:
    """Names ``code`` and the code nested in it (comprehensions, inner functions) read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names


def reusable(fn: object, args: Sequence[object], kwargs: dict[str, object]) -> bool:
    """Whether the call ``fn(*args, **kwargs)``, as unpickled, may serve again (module
    docstring): nothing in it can carry a change from one task to the next."""
    if type(fn) is not types.FunctionType or fn.__module__ != "__main__":
        return False
    if fn.__closure__ is not None or fn.__dict__:
        return False
    if not all(map(_frozen, args)) or not all(map(_frozen, kwargs.values())):
        return False
    if fn.__defaults__ is not None and not _frozen(fn.__defaults__):
        return False
    if fn.__kwdefaults__ and not all(map(_frozen, fn.__kwdefaults__.values())):
        return False
    own = fn.__globals__
    return all(
        _frozen(own[name]) or type(own[name]) is types.ModuleType
        for name in global_names(fn.__code__)
        if name in own
    )


@dataclass(frozen=True, slots=True)
class CachedCall:
    """A call as ``interactive_in`` left it, and what it copied into the namespace."""

    fn: Callable[..., object]
    args: tuple[object, ...]
    kwargs: dict[str, object]
    #: ``(name, value)`` pairs from the function's pickled globals that the namespace
    #: gets if it lacks the name.
    copied: tuple[tuple[str, object], ...]


class CallCache:
    """Up to :data:`MAX_ENTRIES` reusable calls, by the bytes of their pickle frame."""

    def __init__(self, entries: int = MAX_ENTRIES) -> None:
        self._entries = entries
        self._calls: dict[bytes, CachedCall] = {}

    @staticmethod
    def key(frames: Sequence[object]) -> bytes | None:
        """The cache key of a request's buffers, or None if such a call is never kept."""
        if len(frames) != 1:
            return None
        frame = frames[0]
        if type(frame) is not bytes or len(frame) > MAX_KEY:
            return None
        return frame

    def get(self, key: bytes, namespace: dict[str, object]) -> CachedCall | None:
        """The call kept under ``key``, its names copied into ``namespace`` where it lacks
        them; None if there is none, or it was bound to another namespace."""
        call = self._calls.get(key)
        if call is None:
            return None
        if getattr(call.fn, "__globals__", None) is not namespace:
            del self._calls[key]
            return None
        for name, value in call.copied:
            if name not in namespace:
                namespace[name] = value
        return call

    def put(
        self,
        key: bytes,
        unpickled: Callable[..., object],
        bound: Callable[..., object],
        args: tuple[object, ...],
        kwargs: dict[str, object],
    ) -> None:
        """Keep the call if :func:`reusable` says it may serve again. ``unpickled`` is
        the function as unpickled (its globals say what to copy), ``bound`` as called."""
        if not reusable(unpickled, args, kwargs):
            return
        assert isinstance(unpickled, types.FunctionType)  # reusable() checked
        own = unpickled.__globals__
        names = sorted(name for name in global_names(unpickled.__code__) if name in own)
        copied = tuple((name, own[name]) for name in names)
        if len(self._calls) >= self._entries:
            del self._calls[next(iter(self._calls))]
        self._calls[key] = CachedCall(bound, args, kwargs, copied)

    def __len__(self) -> int:
        return len(self._calls)
