"""Object help for ``inspect_request`` (messaging spec, "Introspection") and ``obj?``.

:func:`inspect` finds the dotted name under the cursor, or the callable whose parentheses the
cursor is in (as IPython's ``token_at_cursor``), resolves it by attribute walking only
(:func:`._lookup.resolve`: no evaluation, properties are shown, not run) and renders IPython
style help as plain text. Names missing from the namespace (defined in the cell but not run,
or imported by the cell) are looked up with jedi's static inference instead.

Detail level 0 is ``obj?`` (signature, type, string form, file, docstring); level 1 is
``obj??`` (the docstring replaced by the source, when there is one).
"""

from __future__ import annotations

import functools
import inspect as pyinspect
import io
import keyword
import reprlib
import tokenize
import types
from collections import deque
from collections.abc import Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from ._lookup import jedi_namespace, line_col, resolve

__all__ = ["format_help", "inspect", "token_at_cursor"]

#: "String form:" is cut to this many characters (keeping both ends).
MAX_STRING_FORM = 200

_OPEN = {"(": ")", "[": "]", "{": "}"}
_NO_DOC = "<no docstring>"
_CONTAINERS = (list, tuple, set, frozenset, dict, deque)
_PREVIEW_ITEMS = 30


class _ShortRepr(reprlib.Repr):
    """``reprlib`` limits, minus its sorting of dicts and sets (seconds for 10**7 keys)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother = 3, MAX_STRING_FORM, MAX_STRING_FORM
        self.maxlist = self.maxtuple = self.maxdeque = _PREVIEW_ITEMS

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = islice(x.items(), _PREVIEW_ITEMS)
        parts = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in items]
        return "{" + ", ".join(parts + ["..."] * (len(x) > _PREVIEW_ITEMS)) + "}"

    def repr_set(self, x: set[Any], level: int) -> str:
        return self._unsorted(x, level, "{", "}") if x else "set()"

    def repr_frozenset(self, x: frozenset[Any], level: int) -> str:
        return self._unsorted(x, level, "frozenset({", "})") if x else "frozenset()"

    def _unsorted(self, x: set[Any] | frozenset[Any], level: int, left: str, right: str) -> str:
        if level <= 0:
            return left + "..." + right
        parts = [self.repr1(item, level - 1) for item in islice(x, _PREVIEW_ITEMS)]
        return left + ", ".join(parts + ["..."] * (len(x) > _PREVIEW_ITEMS)) + right


_SHORT = _ShortRepr()

# Each open bracket on the stack: the (dotted name, end offset) it calls, or None.
_Call = tuple[str, int] | None


def inspect(
    code: str, cursor_pos: int, detail_level: int, namespace: dict[str, Any]
) -> dict[str, Any]:
    """The content of an ``inspect_reply`` (without ``status``) for ``code`` at ``cursor_pos``.

    Returns ``{"found": True, "data": {"text/plain": help}, "metadata": {}}`` when the name at
    the cursor resolves, else ``{"found": False, "data": {}, "metadata": {}}``. Never raises.
    """
    text: str | None = None
    try:
        pos = min(max(cursor_pos, 0), len(code))
        token = token_at_cursor(code, pos)
        if token is not None:
            text = format_help(token[0], namespace, detail_level)
            if text is None:
                text = _jedi_help(code, token[1], namespace, detail_level)
    except Exception:
        text = None
    if text is None:
        return {"found": False, "data": {}, "metadata": {}}
    return {"found": True, "data": {"text/plain": text}, "metadata": {}}


def format_help(obj_expr: str, namespace: Mapping[str, Any], detail_level: int) -> str | None:
    """Help text for the dotted name ``obj_expr``, as ``obj?`` (0) or ``obj??`` (1) shows it.

    Returns None when ``obj_expr`` is not a dotted name that resolves in ``namespace`` or
    builtins. Rendering errors (a failing ``__str__``, ``__len__``...) only drop that field.
    """
    expr = obj_expr.strip()
    found, obj = resolve(expr, namespace)
    if not found:
        return None
    return _render(_fields(expr, obj, detail_level))


# -- finding the name ----------------------------------------------------------------------


def token_at_cursor(code: str, cursor_pos: int) -> tuple[str, int] | None:
    """The dotted name to inspect at ``cursor_pos`` and the offset where it ends.

    A name the cursor is on or just after wins (``os.pa|th`` gives ``os.path``); otherwise the
    innermost call whose parentheses hold the cursor (``f(a, |`` or ``f(a)|`` gives ``f``);
    otherwise the last name before the cursor outside call arguments (``f(a) + |`` gives
    ``f``). Keyword-argument names are skipped. Returns None
    when there is no name. Incomplete code is fine: tokenizing stops at the first error.
    """
    tokens = list(_tokens(code))
    starts = _line_offsets(code)
    stack: list[_Call] = []  # per open bracket: the call it belongs to, or None
    chain: _Call = None  # the dotted name being read
    last: _Call = None  # the last dotted name read outside any call
    for index, token in enumerate(tokens):
        start = starts[token.start[0] - 1] + token.start[1]
        end = starts[token.end[0] - 1] + token.end[1]
        if start > cursor_pos:
            break
        if token.type == tokenize.NAME and not keyword.iskeyword(token.string):
            previous = tokens[index - 1].string if index else ""
            name = f"{chain[0]}.{token.string}" if chain and previous == "." else token.string
            chain = (name, end)
            if not any(stack):
                last = chain  # names inside a call's arguments defer to the call
            following = tokens[index + 1].string if index + 1 < len(tokens) else ""
            is_keyword_argument = bool(stack) and following == "="
            if start <= cursor_pos <= end and not is_keyword_argument:
                return chain
            continue
        if token.type == tokenize.OP and token.string in _OPEN:
            calls = token.string == "(" and chain is not None
            stack.append(chain if calls else None)
        elif token.type == tokenize.OP and token.string in _OPEN.values():
            closed = stack.pop() if stack else None
            if closed is not None and start <= cursor_pos <= end:
                return closed
        if token.string != ".":
            chain = None
    return next((call for call in reversed(stack) if call is not None), last)


def _tokens(code: str) -> Iterator[tokenize.TokenInfo]:
    try:
        yield from tokenize.generate_tokens(io.StringIO(code).readline)
    except (tokenize.TokenError, SyntaxError):
        return


def _line_offsets(code: str) -> list[int]:
    """Offset of each line's start, lines split as ``StringIO.readline`` splits them."""
    offsets = [0]
    for line in io.StringIO(code):
        offsets.append(offsets[-1] + len(line))
    return offsets


# -- rendering -----------------------------------------------------------------------------


def _render(fields: list[tuple[str, str]]) -> str:
    """IPython's layout: ``Label: value`` aligned; multi-line values below their label."""
    width = max((len(label) for label, value in fields if "\n" not in value), default=0) + 2
    lines = []
    for label, value in fields:
        if "\n" in value:
            lines.append(f"{label}:\n{value}")
        else:
            lines.append(f"{label + ':':<{width}}{value}")
    return "\n".join(lines)


def _fields(expr: str, obj: Any, detail_level: int) -> list[tuple[str, str]]:
    is_class = isinstance(obj, type)
    is_routine = pyinspect.isroutine(obj) or isinstance(obj, functools.partial)
    is_plain = not (is_class or is_routine or isinstance(obj, types.ModuleType))
    fields: list[tuple[str, str]] = []
    signature = _signature(obj)
    if signature is not None:
        label = "Init signature" if is_class else "Signature" if is_routine else "Call signature"
        if is_class or is_routine or _has_call(obj):
            fields.append((label, expr + signature))
    fields.append(("Type", type(obj).__name__))
    if is_plain:
        _add(fields, "String form", _guard(_string_form, obj))
        _add(fields, "Length", _guard(lambda: str(len(obj))))
    _add(fields, "File", _guard(_file, obj))
    source = _guard(_source, obj) if detail_level > 0 else None
    if source is not None:
        fields.append(("Source", source))
    else:
        fields.append(("Docstring", _guard(pyinspect.getdoc, obj) or _NO_DOC))
        if is_class:
            _add(fields, "Init docstring", _guard(_init_doc, obj))
        elif is_plain and _has_call(obj):
            _add(fields, "Call docstring", _guard(pyinspect.getdoc, type(obj).__call__))
    return fields


def _add(fields: list[tuple[str, str]], label: str, value: str | None) -> None:
    if value:
        fields.append((label, value))


def _guard(func: Any, *args: Any) -> Any:
    """``func(*args)``, or None when it raises: user ``__str__``/``__len__`` may fail."""
    try:
        return func(*args)
    except Exception:
        return None


def _has_call(obj: Any) -> bool:
    return callable(obj) and not isinstance(obj, type) and not pyinspect.isroutine(obj)


def _signature(obj: Any) -> str | None:
    if not callable(obj):
        return None
    try:
        return str(pyinspect.signature(obj))
    except (TypeError, ValueError):
        return None


def _string_form(obj: Any) -> str:
    if type(obj) in _CONTAINERS:
        text = _SHORT.repr(obj)  # never builds the full repr of a huge container
    elif isinstance(obj, str | bytes | bytearray):
        text = str(obj[: MAX_STRING_FORM * 2])
    else:
        text = str(obj)
    if len(text) > MAX_STRING_FORM:
        half = MAX_STRING_FORM // 2
        text = f"{text[:half]} <...> {text[-half:]}"
    return text


def _definition(obj: Any) -> Any:
    """The object whose file and source describe ``obj`` (its class, for an instance)."""
    if isinstance(obj, property) and obj.fget is not None:
        return obj.fget
    if isinstance(obj, functools.partial):
        return obj.func
    if isinstance(obj, type | types.ModuleType) or pyinspect.isroutine(obj):
        return pyinspect.unwrap(obj) if callable(obj) else obj
    return type(obj)


def _file(obj: Any) -> str | None:
    target = _definition(obj)
    return pyinspect.getsourcefile(target) or pyinspect.getfile(target)


def _source(obj: Any) -> str | None:
    return pyinspect.getsource(_definition(obj)).rstrip("\n")


def _init_doc(cls: type) -> str | None:
    init = cls.__dict__.get("__init__") or getattr(cls, "__init__", object.__init__)
    if init is object.__init__:
        return None
    return pyinspect.getdoc(init)


# -- jedi fallback -------------------------------------------------------------------------


def _jedi_help(code: str, end: int, namespace: Mapping[str, Any], detail_level: int) -> str | None:
    """Help from jedi's static inference of the name ending at ``end``, or None."""
    import jedi  # deferred: only needed for names the namespace does not have

    line, column = line_col(code, end)
    script = jedi.Interpreter(code, [jedi_namespace(code, namespace)])
    names = script.infer(line, column)
    if not names:
        return None
    name = names[0]
    fields: list[tuple[str, str]] = []
    signatures = name.get_signatures()
    if signatures:
        fields.append(("Signature", signatures[0].to_string()))
    fields.append(("Type", name.type))
    if name.module_path is not None:
        fields.append(("File", str(name.module_path)))
    source = _jedi_source(name, code) if detail_level > 0 else None
    if source:
        fields.append(("Source", source))
    else:
        fields.append(("Docstring", name.docstring(raw=True) or _NO_DOC))
    return _render(fields)


def _jedi_source(name: Any, code: str) -> str | None:
    start = name.get_definition_start_position()
    stop = name.get_definition_end_position()
    if start is None or stop is None:
        return None
    path = name.module_path
    text = Path(path).read_text(encoding="utf-8") if path is not None else code
    lines = text.splitlines()[start[0] - 1 : stop[0]]
    return "\n".join(lines) or None
