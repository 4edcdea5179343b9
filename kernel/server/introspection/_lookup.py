"""Resolve dotted names against a live namespace without running user code.

Shared by completion and inspection. The contract of :func:`resolve` is that it walks
attributes the way IPython's ``obj?`` does, but never evaluates a property or any other
user-defined descriptor: for those it returns the descriptor object itself. Binding a plain
function or reading a C-level slot is harmless and is done.

Also holds the small text helpers both callers need: code point offsets to jedi's
``(line, column)`` and a namespace reduced to the names a piece of code mentions (jedi's cost
grows with the size of the namespace it is given).
"""

from __future__ import annotations

import builtins
import inspect
import keyword
import re
import types
from collections.abc import Mapping
from typing import Any

__all__ = ["is_big_namespace", "is_dotted_name", "jedi_namespace", "line_col", "resolve"]

#: Above this many names, jedi only gets the names the code mentions.
JEDI_NAMESPACE_LIMIT = 2000

_IDENTIFIER_RE = re.compile(r"[^\W\d]\w*")
_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")

# Descriptor kinds whose __get__ is implemented by CPython and runs no user code.
_SAFE_DESCRIPTORS: tuple[type, ...] = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
    types.MemberDescriptorType,
    types.GetSetDescriptorType,
    classmethod,
    staticmethod,
)

_MISSING = object()


def is_dotted_name(expr: str) -> bool:
    """True if ``expr`` is ``name`` or ``name.attr.attr`` made of non-keyword identifiers."""
    parts = expr.split(".")
    return all(part.isidentifier() and not keyword.iskeyword(part) for part in parts)


def resolve(expr: str, namespace: Mapping[str, Any]) -> tuple[bool, Any]:
    """Look up dotted ``expr`` in ``namespace`` (then builtins) by attribute walking.

    Returns ``(True, obj)`` when every step exists and ``(False, None)`` otherwise. Never
    raises (apart from ``KeyboardInterrupt``) and never evaluates arbitrary code: a property,
    ``cached_property`` or custom descriptor met on the way is returned unevaluated, and a
    module's ``__getattr__`` is the only dynamic lookup performed.
    """
    if not is_dotted_name(expr):
        return False, None
    first, *rest = expr.split(".")
    try:
        obj = _lookup_global(first, namespace)
        for attr in rest:
            if obj is _MISSING:
                break
            obj = _static_attribute(obj, attr)
    except Exception:
        return False, None
    if obj is _MISSING:
        return False, None
    return True, obj


def _lookup_global(name: str, namespace: Mapping[str, Any]) -> Any:
    if name in namespace:
        return namespace[name]
    builtin_ns = namespace.get("__builtins__", builtins)
    if isinstance(builtin_ns, types.ModuleType):
        builtin_ns = vars(builtin_ns)
    if isinstance(builtin_ns, Mapping) and name in builtin_ns:
        return builtin_ns[name]
    return _MISSING


def _static_attribute(obj: Any, attr: str) -> Any:
    try:
        found = inspect.getattr_static(obj, attr)
    except AttributeError:
        if isinstance(obj, types.ModuleType):
            # PEP 562 lazy attributes: importing a submodule is what the user asked about.
            return getattr(obj, attr, _MISSING)
        return _MISSING
    if isinstance(found, _SAFE_DESCRIPTORS):
        return getattr(obj, attr)
    return found


def line_col(code: str, offset: int) -> tuple[int, int]:
    """jedi's ``(line, column)`` (1-based line, 0-based code point column) of ``offset``.

    Line breaks are ``\\r\\n``, ``\\r`` and ``\\n``, as parso counts them.
    """
    head = code[:offset]
    lines = _LINE_BREAK_RE.split(head)
    return len(lines), len(lines[-1])


def jedi_namespace(code: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The namespace to hand to jedi for ``code``; see :func:`is_big_namespace`.

    Only string keys are kept (jedi sorts them). A small namespace is kept whole; a big one is
    cut down to the names ``code`` mentions plus ``__builtins__``: jedi wraps every name it is
    given, so 100k names cost it seconds.
    """
    if not is_big_namespace(namespace):
        return {name: value for name, value in namespace.items() if isinstance(name, str)}
    reduced: dict[str, Any] = {}
    for name in set(_IDENTIFIER_RE.findall(code)) | {"__builtins__"}:
        if name in namespace:
            reduced[name] = namespace[name]
    return reduced


def is_big_namespace(namespace: Mapping[str, Any]) -> bool:
    """True if jedi gets only the names the code mentions (see :func:`jedi_namespace`)."""
    return len(namespace) > JEDI_NAMESPACE_LIMIT
