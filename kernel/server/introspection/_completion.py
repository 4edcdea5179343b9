"""Tab completion for ``complete_request`` (messaging spec, "Completion").

:func:`complete` merges, best first and without duplicates:

1. magic names, for a ``%name`` / ``%%name`` token at the start of a line;
2. dict keys, for ``d["ke`` (quoted: the rest of the key, the closing quote and ``]``) and
   ``d[`` (unquoted: the key's ``repr`` and ``]``) on a mapping reachable by attribute walking;
3. file system paths inside string literals and in the arguments of ``%magic`` / ``!cmd`` lines;
4. jedi's completions on the live namespace (attributes, names, keywords, imports, parameters),
   without the bare names jedi takes from its builtins stub or its namespace stand-in
   that the namespace does not have (``AbstractSet``, ``__dict__`` in an empty session).

Cost is bounded without threads: jedi never sees more than a few thousand namespace names
(:func:`._lookup.jedi_namespace`; bare names of a bigger namespace come from a bounded scan),
objects with more than :data:`BIG_DIR` attributes are completed from ``dir()`` instead of
jedi, dict keys and directory entries are scanned in bounded slices that stop at the
deadline, and no source produces more than :data:`MAX_MATCHES`.
jedi runs with ``allow_unsafe_interpreter_executions`` off, so pressing Tab never evaluates a
property or ``__getitem__``.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from ._lookup import is_big_namespace, jedi_namespace, line_col, resolve
from ._sources import (
    MAX_MATCHES,
    Match,
    attribute_matches,
    key_matches,
    list_attributes,
    name_matches,
    path_matches,
)

__all__ = ["BIG_DIR", "MAX_MATCHES", "complete"]

#: Objects with more attributes than this are completed from ``dir()``, not by jedi.
BIG_DIR = 2000
#: jedi signatures are computed for at most this many function completions...
MAX_SIGNATURES = 50
#: ...and for at most this long (seconds): a cold jedi takes ~5 ms per builtin signature.
SIGNATURE_TIME = 0.1

_DOTTED = r"(?<![\w.)\]'\"])((?:[^\W\d]\w*\.)*[^\W\d]\w*)"
_ATTRIBUTE_RE = re.compile(_DOTTED + r"\.(\w*)$")
_QUOTED_KEY_HEAD_RE = re.compile(_DOTTED + r"\s*\[\s*$")
_UNQUOTED_KEY_RE = re.compile(_DOTTED + r"\s*\[\s*(\d*)$")
_BARE_NAME_RE = re.compile(r"(?<![\w.])([^\W\d]\w*)?$")
_MAGIC_NAME_RE = re.compile(r"(\s*|\s*[\w.,\s*]+=\s*)(%%?)(\w*)")
_MAGIC_LINE_RE = re.compile(r"\s*(?:[\w.,\s*]+=\s*)?%%?\w+\s")
_SHELL_LINE_RE = re.compile(r"\s*(?:[\w.,\s*]+=\s*)?!")
_LEXEME_RE = re.compile(r"#|((?<!\w)[rRbBuUfF]{1,2})?('''|\"\"\"|'|\")")
_STRING_END_RE = {
    quote: re.compile(r"\\(?:.|\Z)|" + re.escape(quote) + ("" if len(quote) == 3 else r"|\n"), re.S)
    for quote in ("'", '"', "'''", '"""')
}


@dataclasses.dataclass(frozen=True, slots=True)
class _InString:
    """The cursor is inside a string literal whose content starts at ``content_start``."""

    content_start: int
    quote: str
    prefix: str


class _InComment:
    """The cursor is inside a ``#`` comment."""


def complete(
    code: str,
    cursor_pos: int,
    namespace: dict[str, Any],
    *,
    magics: Iterable[str] = (),
    budget: float = 0.8,
) -> dict[str, Any]:
    """The content of a ``complete_reply`` (without ``status``) for ``code`` at ``cursor_pos``.

    ``cursor_pos`` counts unicode code points; out-of-range values are clamped into the code.
    ``magics`` are magic names with or without the leading ``%``. ``budget`` (seconds) is the
    time after which the bounded scans stop early and jedi is no longer started.

    Returns ``{"matches", "cursor_start", "cursor_end", "metadata"}`` where every match
    replaces ``code[cursor_start:cursor_end]`` and ``metadata["_jupyter_types_experimental"]``
    lists ``{"start", "end", "text", "type", "signature"}`` per match. Never raises: on any
    error the reply has no matches and ``cursor_start == cursor_end == cursor_pos`` (clamped).
    """
    try:
        pos = _clamp(cursor_pos, code)
        deadline = time.monotonic() + budget
        names = [name.lstrip("%") for name in magics]
        return _reply(code, pos, _collect(code, pos, namespace, names, deadline))
    except Exception:
        return _reply(code, _clamp(cursor_pos, code), [])


def _clamp(cursor_pos: int, code: str) -> int:
    try:
        return min(max(cursor_pos, 0), len(code))
    except Exception:
        return cursor_pos


def _reply(code: str, pos: int, matches: list[Match]) -> dict[str, Any]:
    # The reply has one replacement range; widen every match to the earliest start.
    start = min((m.start for m in matches), default=pos)
    texts: list[str] = []
    types_: list[dict[str, Any]] = []
    seen: set[str] = set()
    for match in matches:
        text = code[start : match.start] + match.text
        if text in seen:
            continue
        seen.add(text)
        texts.append(text)
        entry = {"start": start, "end": pos, "text": text, "type": match.type}
        types_.append({**entry, "signature": match.signature})
        if len(texts) >= MAX_MATCHES:
            break
    return {
        "matches": texts,
        "cursor_start": start,
        "cursor_end": pos,
        "metadata": {"_jupyter_types_experimental": types_},
    }


def _collect(
    code: str, pos: int, namespace: Mapping[str, Any], magics: list[str], deadline: float
) -> list[Match]:
    before = code[:pos]
    context = _scan(before)
    if isinstance(context, _InComment):
        return []
    if isinstance(context, _InString):
        return _string_matches(code, pos, context, namespace, deadline)
    line_start = max(before.rfind("\n"), before.rfind("\r")) + 1
    line = before[line_start:]
    magic = _MAGIC_NAME_RE.fullmatch(line)
    if magic:
        return _magic_matches(magic, line_start, magics)
    if _SHELL_LINE_RE.match(line):
        return _argument_matches(line, line_start, None, deadline)
    command = _MAGIC_LINE_RE.match(line)
    if command:
        return _argument_matches(line, line_start, (command.end(), namespace), deadline)
    return _code_matches(code, pos, namespace, deadline)


# -- context -------------------------------------------------------------------------------


def _scan(text: str) -> _InString | _InComment | None:
    """Whether the end of ``text`` lies in a string literal, a comment, or plain code."""
    index = 0
    while True:
        lexeme = _LEXEME_RE.search(text, index)
        if lexeme is None:
            return None
        if lexeme.group(0) == "#":
            newline = text.find("\n", lexeme.end())
            if newline == -1:
                return _InComment()
            index = newline + 1
            continue
        quote = lexeme.group(2)
        end = _string_end(text, lexeme.end(), quote)
        if end is None:
            return _InString(lexeme.end(), quote, lexeme.group(1) or "")
        index = end


def _string_end(text: str, start: int, quote: str) -> int | None:
    """Index after the literal opened before ``start``, or None when it is still open."""
    pattern = _STRING_END_RE[quote]
    index = start
    while True:
        found = pattern.search(text, index)
        if found is None:
            return None
        if found.group(0).startswith("\\"):
            if found.end() >= len(text) and len(found.group(0)) == 1:
                return None  # a trailing backslash escapes whatever comes next
            index = found.end()
            continue
        return found.end()  # closing quote, or the newline ending an unterminated literal


# -- sources -------------------------------------------------------------------------------


def _magic_matches(magic: re.Match[str], line_start: int, magics: list[str]) -> list[Match]:
    lead, percents, prefix = magic.groups()
    if percents == "%%" and (line_start != 0 or lead):
        return []  # cell magics only exist on the first line of a cell
    start = line_start + magic.start(2)
    return [
        Match(start, percents + name, "magic") for name in sorted(magics) if name.startswith(prefix)
    ]


def _argument_matches(
    line: str,
    line_start: int,
    python_args: tuple[int, Mapping[str, Any]] | None,
    deadline: float,
) -> list[Match]:
    """Paths for the last word of a ``!cmd`` / ``%magic`` line, plus Python for magic args."""
    word_start = max(line.rfind(" "), line.rfind("\t")) + 1
    found = path_matches(line[word_start:], line_start + word_start, deadline, quote="")
    if python_args is not None:
        args_start, namespace = python_args
        args = line[args_start:]
        python = _code_matches(args, len(args), namespace, deadline)
        found += [dataclasses.replace(m, start=m.start + line_start + args_start) for m in python]
    return found


def _string_matches(
    code: str, pos: int, context: _InString, namespace: Mapping[str, Any], deadline: float
) -> list[Match]:
    typed = code[context.content_start : pos]
    head = code[: context.content_start - len(context.quote) - len(context.prefix)]
    subscript = _QUOTED_KEY_HEAD_RE.search(head)
    if subscript:
        found, obj = resolve(subscript.group(1), namespace)
        if found and isinstance(obj, Mapping):
            key_type: type = bytes if "b" in context.prefix.lower() else str
            keys = key_matches(obj, (key_type,), typed, context.quote, code[pos:], deadline)
            if keys:
                return [Match(context.content_start, text, "dict key") for text in keys]
    if "\n" not in typed:
        paths = path_matches(typed, context.content_start, deadline, context.quote)
        if paths:
            return paths
    if head.rstrip().endswith("["):
        return _jedi_matches(code, pos, namespace, deadline)  # e.g. a dict literal in the cell
    return []


def _code_matches(
    code: str, pos: int, namespace: Mapping[str, Any], deadline: float
) -> list[Match]:
    before = code[:pos]
    found: list[Match] = []
    subscript = _UNQUOTED_KEY_RE.search(before)
    if subscript:
        ok, obj = resolve(subscript.group(1), namespace)
        if ok and isinstance(obj, Mapping):
            keys = key_matches(
                obj, (str, bytes, int), subscript.group(2), None, code[pos:], deadline
            )
            found += [Match(subscript.start(2), text, "dict key") for text in keys]
    attribute = _ATTRIBUTE_RE.search(before)
    if attribute:
        ok, obj = resolve(attribute.group(1), namespace)
        names = list_attributes(obj) if ok else None
        if names is not None and len(names) > BIG_DIR:
            start = attribute.start(2)
            return found + attribute_matches(obj, names, attribute.group(2), start, deadline)
    jedi_found = _jedi_matches(code, pos, namespace, deadline)
    if found:  # our keys already cover jedi's own (differently quoted) dict keys
        jedi_found = [m for m in jedi_found if m.type != "string"]
    return found + jedi_found


# -- jedi ----------------------------------------------------------------------------------


def _jedi_matches(
    code: str, pos: int, namespace: Mapping[str, Any], deadline: float
) -> list[Match]:
    if time.monotonic() >= deadline:
        return []
    import jedi  # deferred: importing jedi costs kernel start-up ~0.1 s

    line, column = line_col(code, pos)
    with _jedi_settings(jedi):
        script = jedi.Interpreter(code, [jedi_namespace(code, namespace)])
        completions = script.complete(line, column)
    found = []
    signatures_left = MAX_SIGNATURES
    signatures_until = min(deadline, time.monotonic() + SIGNATURE_TIME)
    for completion in islice(completions, MAX_MATCHES):
        start = pos - completion.get_completion_prefix_length()
        if not _is_bound(completion, code, start, namespace):
            continue
        signature = ""
        if (
            completion.type == "function"
            and signatures_left
            and time.monotonic() < signatures_until
        ):
            signatures_left -= 1
            signature = _jedi_signature(completion)
        found.append(Match(start, completion.name_with_symbols, completion.type, signature))
    bare = _BARE_NAME_RE.search(code[:pos])
    if bare and is_big_namespace(namespace):
        # jedi only saw the names the code mentions: the namespace's names come from a scan.
        prefix = bare.group(1) or ""
        found += name_matches(namespace, prefix, pos - len(prefix), deadline)
        found.sort(key=_jedi_order)
    return found


#: Where jedi finds bare names that need not exist: its builtins stub (typeshed's
#: ``builtins.pyi``, which imports ``AbstractSet`` and declares ``WindowsError``) and
#: the object that stands for the namespace (whose ``__class__``, ``__dict__``...).
_STUB_MODULES = frozenset({"builtins", "jedi.api.interpreter"})
#: The kinds of completion such names come as.
_NAME_TYPES = frozenset({"class", "function", "instance", "statement"})


def _is_bound(completion: Any, code: str, start: int, namespace: Mapping[str, Any]) -> bool:
    """False for a bare name jedi offers that the cell could not use.

    A bare name (not after a ``.``) from jedi's stubs is kept only when the namespace
    or its builtins has it; keywords, modules, strings, names the code defines and
    attributes are jedi's to judge. The cheap tests come first: asking jedi for a
    completion's module can import it (imports of a module name on Tab).
    """
    if completion.type not in _NAME_TYPES or code[:start].rstrip().endswith("."):
        return True
    name = completion.name
    if name in namespace:
        return True
    builtins_: Any = namespace.get("__builtins__", builtins)
    if not isinstance(builtins_, Mapping):  # a module: its own names, not a module's attributes
        builtins_ = getattr(builtins_, "__dict__", {})
    return name in builtins_ or completion.module_name not in _STUB_MODULES


def _jedi_order(match: Match) -> tuple[bool, bool, bool, str]:
    # Keyword arguments first, then public, _private and __dunder__ names, case-insensitively.
    name = match.text
    return (match.type != "param", name.startswith("__"), name.startswith("_"), name.lower())


def _jedi_signature(completion: Any) -> str:
    try:
        signatures = completion.get_signatures()
    except Exception:
        return ""
    if not signatures:
        return ""
    text: str = signatures[0].to_string()
    return text[text.find("(") :] if "(" in text else text


@contextlib.contextmanager
def _jedi_settings(jedi: Any) -> Iterator[None]:
    """Case-sensitive completion that never evaluates descriptors or ``__getitem__``."""
    settings = jedi.settings
    saved = settings.allow_unsafe_interpreter_executions, settings.case_insensitive_completion
    settings.allow_unsafe_interpreter_executions = False
    settings.case_insensitive_completion = False
    try:
        yield
    finally:
        (
            settings.allow_unsafe_interpreter_executions,
            settings.case_insensitive_completion,
        ) = saved
