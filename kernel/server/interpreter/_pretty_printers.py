"""The printers of ``_pretty`` for particular types, as IPython's ``IPython.lib.pretty`` has them.

A printer is ``fn(obj, p, cycle)``: it writes ``obj`` to the printer ``p``; ``cycle`` is true
when ``obj`` is already being printed further out (a self-containing list prints ``[...]``).
Ported from IPython (BSD-3-Clause, Copyright (c) IPython Development Team); the output must
stay byte-for-byte what IPython prints.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import os
import re
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._pretty import PrettyPrinter

__all__ = ["DEFAULT_PRINTER", "NAMED_PRINTERS", "REPR_PRINTER", "SINGLETONS", "TYPE_PRINTERS"]

Printer = Callable[[Any, "PrettyPrinter", bool], object]

_BUILTIN_MODULES = (None, "__builtin__", "builtins", "exceptions")
_RE_FLAGS = ("IGNORECASE", "LOCALE", "MULTILINE", "DOTALL", "UNICODE", "VERBOSE", "DEBUG")


def _safe_getattr(obj: object, name: str, default: Any = None) -> Any:
    try:
        return getattr(obj, name, default)
    except Exception:
        return default


def _repr_pprint(obj: object, p: PrettyPrinter, cycle: bool) -> None:
    """The plain ``repr``, its line breaks kept as breaks."""
    with p.group():
        for index, line in enumerate(repr(obj).splitlines()):
            if index:
                p.break_()
            p.text(line)


def _default_pprint(obj: object, p: PrettyPrinter, cycle: bool) -> None:
    """``<module.Class at 0x...>`` for objects whose class keeps ``object.__repr__``."""
    klass = _safe_getattr(obj, "__class__", None) or type(obj)
    if _safe_getattr(klass, "__repr__", None) is not object.__repr__:
        _repr_pprint(obj, p, cycle)
        return
    p.begin_group(1, "<")
    p.pretty(klass)
    p.text(f" at 0x{id(obj):x}")
    if cycle:
        p.text(" ...")
    p.end_group(1, ">")


def _seq_pprinter(start: str, end: str) -> Printer:
    def inner(obj: Any, p: PrettyPrinter, cycle: bool) -> None:
        if cycle:
            p.text(start + "..." + end)
            return
        step = len(start)
        p.begin_group(step, start)
        for index, item in p._enumerate(obj):
            if index:
                p.text(",")
                p.breakable()
            p.pretty(item)
        if len(obj) == 1 and isinstance(obj, tuple):
            p.text(",")  # a 1-tuple
        p.end_group(step, end)

    return inner


def _sorted_for_pprint(items: Any) -> list[Any]:
    """Sorted if the items compare, else by their ``str``, else as they come."""
    listed: list[Any] = list(items)
    for key in (None, str):
        try:
            return sorted(listed, key=key)
        except Exception:
            continue
    return listed


def _set_pprinter(start: str, end: str) -> Printer:
    def inner(obj: Any, p: PrettyPrinter, cycle: bool) -> None:
        if cycle:
            p.text(start + "..." + end)
            return
        if not obj:
            p.text(type(obj).__name__ + "()")
            return
        step = len(start)
        p.begin_group(step, start)
        sortable = not (p.max_seq_length and len(obj) >= p.max_seq_length)
        for index, item in p._enumerate(_sorted_for_pprint(obj) if sortable else obj):
            if index:
                p.text(",")
                p.breakable()
            p.pretty(item)
        p.end_group(step, end)

    return inner


def _dict_pprinter(start: str, end: str) -> Printer:
    def inner(obj: Any, p: PrettyPrinter, cycle: bool) -> None:
        if cycle:
            p.text("{...}")
            return
        step = len(start)
        p.begin_group(step, start)
        for index, key in p._enumerate(obj.keys()):
            if index:
                p.text(",")
                p.breakable()
            p.pretty(key)
            p.text(": ")
            p.pretty(obj[key])
        p.end_group(step, end)

    return inner


def _super_pprint(obj: Any, p: PrettyPrinter, cycle: bool) -> None:
    p.begin_group(8, "<super: ")
    p.pretty(obj.__thisclass__)
    p.text(",")
    p.breakable()
    p.pretty(obj.__self__)
    p.end_group(8, ">")


def _type_pprint(obj: Any, p: PrettyPrinter, cycle: bool) -> None:
    """``module.Qualname`` (``int`` for builtins) unless the metaclass has its own repr."""
    if [m for m in type(obj).__mro__ if "__repr__" in vars(m)][:1] != [type]:
        _repr_pprint(obj, p, cycle)
        return
    mod = _safe_getattr(obj, "__module__", None)
    try:
        name = obj.__qualname__
        if not isinstance(name, str):
            raise TypeError(name)
    except Exception:
        name = obj.__name__
        if not isinstance(name, str):
            name = "<unknown type>"
    p.text(name if mod in _BUILTIN_MODULES else f"{mod}.{name}")


def _function_pprint(obj: Any, p: PrettyPrinter, cycle: bool) -> None:
    """``<function module.name(signature)>``."""
    name = _safe_getattr(obj, "__qualname__", obj.__name__)
    mod = obj.__module__
    if mod and mod not in _BUILTIN_MODULES:
        name = f"{mod}.{name}"
    with contextlib.suppress(ValueError):
        name += str(inspect.signature(obj))
    p.text(f"<function {name}>")


class RawText:
    """Printed as its text, unquoted."""

    def __init__(self, value: str) -> None:
        self.value = value

    def _repr_pretty_(self, p: PrettyPrinter, cycle: bool) -> None:
        p.text(self.value)


class CallExpression:
    """Printed as a call ``name(arg, ..., key=value)``, wrapped like a tuple."""

    def __init__(self, name: str, *args: object, **kwargs: object) -> None:
        self.name, self.args, self.kwargs = name, args, kwargs

    def _repr_pretty_(self, p: PrettyPrinter, cycle: bool) -> None:
        prefix = self.name + "("
        items: list[tuple[str, object]] = [("", arg) for arg in self.args]
        items += [(f"{key}=", value) for key, value in self.kwargs.items()]
        with p.group(len(prefix), prefix, ")"):
            for index, (label, value) in enumerate(items):
                if index:
                    p.text(",")
                    p.breakable()
                with p.group(len(label), label):
                    p.pretty(value)


class _RawStringLiteral:
    def __init__(self, value: str) -> None:
        self.value = value

    def _repr_pretty_(self, p: PrettyPrinter, cycle: bool) -> None:
        p.text("r" + repr(self.value).replace("\\\\", "\\"))


class _ReFlags:
    def __init__(self, value: int) -> None:
        self.value = value

    def _repr_pretty_(self, p: PrettyPrinter, cycle: bool) -> None:
        p.text("|".join(f"re.{flag}" for flag in _RE_FLAGS if self.value & getattr(re, flag)))


def _re_pattern_pprint(obj: re.Pattern[str], p: PrettyPrinter, cycle: bool) -> None:
    args: list[object] = [_RawStringLiteral(obj.pattern)]
    if obj.flags:
        args.append(_ReFlags(obj.flags))
    p.pretty(CallExpression("re.compile", *args))


def _simplenamespace_pprint(obj: Any, p: PrettyPrinter, cycle: bool) -> None:
    if cycle:
        p.pretty(CallExpression("namespace", RawText("...")))
    else:
        p.pretty(CallExpression("namespace", **obj.__dict__))


def _exception_pprint(obj: BaseException, p: PrettyPrinter, cycle: bool) -> None:
    cls = obj.__class__
    name = getattr(cls, "__qualname__", cls.__name__)
    if cls.__module__ not in ("exceptions", "builtins"):
        name = f"{cls.__module__}.{name}"
    p.pretty(CallExpression(name, *getattr(obj, "args", ())))


def _constructor_pprinter(
    arguments: Callable[[Any], tuple[tuple[Any, ...], dict[str, Any]]],
) -> Printer:
    """A printer writing ``ClassName(*args, **kwargs)`` with what ``arguments(obj)`` gives."""

    def inner(obj: Any, p: PrettyPrinter, cycle: bool) -> None:
        name = obj.__class__.__name__
        if cycle:
            p.pretty(CallExpression(name, RawText("...")))
            return
        args, kwargs = arguments(obj)
        p.pretty(CallExpression(name, *args, **kwargs))

    return inner


def _deque_arguments(obj: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (list(obj),), ({} if obj.maxlen is None else {"maxlen": obj.maxlen})


TYPE_PRINTERS: dict[type, Printer] = {
    int: _repr_pprint,
    float: _repr_pprint,
    str: _repr_pprint,
    tuple: _seq_pprinter("(", ")"),
    list: _seq_pprinter("[", "]"),
    dict: _dict_pprinter("{", "}"),
    set: _set_pprinter("{", "}"),
    frozenset: _set_pprinter("frozenset({", "})"),
    super: _super_pprint,
    re.Pattern: _re_pattern_pprint,
    type: _type_pprint,
    types.FunctionType: _function_pprint,
    types.BuiltinFunctionType: _function_pprint,
    types.MethodType: _repr_pprint,
    types.SimpleNamespace: _simplenamespace_pprint,
    datetime.datetime: _repr_pprint,
    datetime.timedelta: _repr_pprint,
    BaseException: _exception_pprint,
    type(os.environ): _dict_pprinter("environ{", "}"),
    types.MappingProxyType: _dict_pprinter("mappingproxy({", "})"),
    slice: _repr_pprint,
    range: _repr_pprint,
    bytes: _repr_pprint,
}
"""Printers by type, looked up along the object's MRO."""

NAMED_PRINTERS: dict[tuple[str, str], Printer] = {
    ("collections", "defaultdict"): _constructor_pprinter(
        lambda o: ((o.default_factory, dict(o)), {})
    ),
    ("collections", "OrderedDict"): _constructor_pprinter(
        lambda o: (((list(o.items()),) if o else ()), {})
    ),
    ("collections", "deque"): _constructor_pprinter(_deque_arguments),
    ("collections", "Counter"): _constructor_pprinter(
        lambda o: (((dict(o.most_common()),) if o else ()), {})
    ),
    ("collections", "UserList"): _constructor_pprinter(lambda o: ((o.data,), {})),
}
"""Printers by ``(module, class name)``, so their modules need not be imported first."""

SINGLETONS: dict[int, Printer] = {
    id(obj): _repr_pprint for obj in (None, True, False, Ellipsis, NotImplemented)
}
"""Printers for singletons, by ``id``."""

DEFAULT_PRINTER: Printer = _default_pprint
"""The printer of objects no other printer claims."""

REPR_PRINTER: Printer = _repr_pprint
"""The printer of objects whose class defines ``__repr__``: the repr as it is."""
