"""A function's pickle, kept between calls while nothing it carries can have changed.

cloudpickle pickles a function of ``__main__`` (or a lambda) by value: its code, the
globals it names, its defaults, closure and attributes. That was the largest single
cost of a trivial ``rc[:].apply_sync(f)`` on the client (~65 us of ~1 ms, measured) and
of each ``apply_async``. The pickle is not kept blindly: a global the function reads may
have been rebound since, and its pickle must carry the new value, as before.

So a pickle is reused only for a function whose every captured part is immutable and is
the *same object* as when it was pickled (compared by identity: ``1`` and ``True`` are
equal, their pickles are not):

- the code object, the globals dict, the name, qualname, module and doc string;
- no ``__dict__``, no annotations, no keyword defaults; positional defaults and closure
  cells holding only atomic values (``int``, ``float``, ``str``, ``bytes``, ...);
- each name the code (or code nested in it) may read as a global: absent from the
  globals, or bound to an atomic value or to a module that is imported under its name
  (cloudpickle pickles those by reference: a name to import); with a module, also the
  number of modules imported (cloudpickle adds the submodules the code may use that
  are imported by then, e.g. ``os.path``, so an import since makes a new pickle).

Anything else (a global list, a class, another function, a cell holding an object) is
pickled afresh at every call, as it always was. Nothing is cached while cloudpickle's
"pickle by value" registry is in use (``register_pickle_by_value``), which changes how
modules and their functions are pickled. The key is the code object: a ``lambda``
written in a loop is a new function each time with the same code.

What travels is the call with the function as a :class:`PickledOnce` (as a map's tasks
carry theirs): the engine unpickles the same function. Plain arguments (or none) are
then pickled by the standard pickler (``serialize_pickled_call``), others by cloudpickle.
"""

from __future__ import annotations

import sys
import types
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final

import cloudpickle

from .._errors import SerializationError
from ..protocol._serialize import PickledOnce, serialize_call, serialize_pickled_call

__all__ = ["serialize_apply", "use_cloudpickle", "use_dill", "use_pickle"]

#: Values whose pickle depends only on their identity-equal self.
_ATOMIC: Final = frozenset({int, float, complex, str, bytes, bool, type(None)})
#: At most this many functions' pickles are kept (cleared when full: a notebook that
#: redefines functions makes new code objects; the old ones go with their functions).
CAPACITY: Final = 256

_MISSING: Final = object()

#: code object -> the names it and the code nested in it may read as globals.
_names: weakref.WeakKeyDictionary[types.CodeType, tuple[str, ...]] = weakref.WeakKeyDictionary()
#: code object -> (the parts the pickle was made from, the pickle).
_kept: weakref.WeakKeyDictionary[types.CodeType, tuple[tuple[object, ...], PickledOnce]] = (
    weakref.WeakKeyDictionary()
)


def serialize_apply(
    fn: Callable[..., object], args: Sequence[object], kwargs: dict[str, Any]
) -> list[bytes]:
    """``serialize_call(fn, args, kwargs)``, with ``fn``'s pickle reused where it cannot
    differ (module docstring). Errors as ``serialize_call``'s, naming what fails."""
    once = _pickled(fn)
    if once is None:
        return serialize_call(fn, tuple(args), kwargs)
    frames = serialize_pickled_call(once, args, kwargs)
    if frames is not None:
        return frames
    try:
        return serialize_call(once, tuple(args), kwargs)  # type: ignore[arg-type]
    except SerializationError:  # said again with the function's own name
        return serialize_call(fn, tuple(args), kwargs)


def _pickled(fn: object) -> PickledOnce | None:
    """``fn``'s kept pickle, made now if needed; None where it may not be kept."""
    if type(fn) is not types.FunctionType:
        return None
    parts = _parts(fn)
    if parts is None:
        return None
    code = fn.__code__
    kept = _kept.get(code)
    if kept is not None and _same(kept[0], parts):
        return kept[1]
    try:
        once = PickledOnce(fn)
    except SerializationError:
        return None  # serialize_call says what fails, and where
    if len(_kept) >= CAPACITY:
        _kept.clear()
    _kept[code] = (parts, once)
    return once


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """Identical parts (the module count: equal)."""
    return len(a) == len(b) and all(
        x is y or (type(x) is _ModuleCount and x == y) for x, y in zip(a, b, strict=True)
    )


def _parts(fn: types.FunctionType) -> tuple[object, ...] | None:
    """Everything ``fn``'s pickle is made of, or None if some of it may change inside."""
    if fn.__dict__ or fn.__kwdefaults__ or fn.__annotations__:
        return None
    if cloudpickle.list_registry_pickle_by_value():
        return None
    parts: list[object] = [
        fn.__code__,
        fn.__globals__,
        fn.__name__,
        fn.__qualname__,
        fn.__module__,
        fn.__doc__,
        fn.__defaults__,
    ]
    for value in fn.__defaults__ or ():
        if type(value) not in _ATOMIC:
            return None
    for cell in fn.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            return None
        if type(value) not in _ATOMIC:
            return None
        parts.append(value)
    namespace = fn.__globals__
    modules = False
    for name in _global_names(fn.__code__):
        value = namespace.get(name, _MISSING)
        if value is not _MISSING and type(value) not in _ATOMIC:
            if not _imported(value):
                return None
            modules = True
        parts.append(value)
    if modules:  # the one part compared by value: an int made now
        parts.append(_ModuleCount(len(sys.modules)))
    return tuple(parts)


class _ModuleCount(int):
    """How many modules were imported: equal counts are the same part (``_same``)."""

    __slots__ = ()


def _imported(value: object) -> bool:
    """A module imported under its own name (pickled as that name)."""
    if type(value) is not types.ModuleType:
        return False
    name = value.__name__
    return name != "__main__" and sys.modules.get(name) is value


def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """The names ``code`` may read as globals: all of its and its nested code's
    ``co_names`` (attribute names too: more than needed, never fewer)."""
    names = _names.get(code)
    if names is None:
        found: dict[str, None] = {}
        stack = [code]
        while stack:
            current = stack.pop()
            found.update(dict.fromkeys(current.co_names))
            stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
        names = _names[code] = tuple(found)
    return names


def use_cloudpickle() -> None:
    """Nothing to switch: Loom always pickles with cloudpickle (ipyparallel's module-level
    switch, kept so that code calling it runs unchanged)."""


def use_pickle() -> None:
    """As :func:`use_cloudpickle`: cloudpickle pickles all that ``pickle`` does."""


def use_dill() -> None:
    """As :func:`use_cloudpickle`: cloudpickle covers what code switches to dill for
    (lambdas, closures, interactively defined classes)."""
