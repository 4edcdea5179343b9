"""Tab completion for ``complete_request`` (messaging spec, "Completion").

:func:`complete` merges, best first and without duplicates:

1. magic names, for a ``%name`` / ``%%name`` token at the start of a line;
2. dict keys, for ``d["ke`` (quoted: the rest of the key, the closing quote and ``]``) and
   ``d[`` (unquoted: the key's ``repr`` and ``]``) on a mapping reachable by attribute walking;
3. file system paths inside string literals and in the arguments of ``%magic`` / ``!cmd`` lines;
4. jedi's completions on the live namespace (attributes, names, keywords, imports, parameters).

Cost is bounded without threads: jedi never sees more than a few thousand namespace names
(:func:`._lookup.jedi_namespace`), objects with more than :data:`BIG_DIR` attributes are
completed from ``dir()`` instead of jedi, dict keys and directory entries are scanned in
bounded slices that stop at the deadline, and no source produces more than :data:`MAX_MATCHES`.
jedi runs with ``allow_unsafe_interpreter_executions`` off, so pressing Tab never evaluates a
property or ``__getitem__``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import re
import time
import types
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from ._lookup import jedi_namespace, line_col, resolve

__all__ = ["BIG_DIR", "MAX_MATCHES", "complete"]

#: No reply carries more matches than this.
MAX_MATCHES = 1000
#: Objects with more attributes than this are completed from ``dir()``, not by jedi.
BIG_DIR = 2000
#: At most this many keys of a mapping are looked at.
MAX_KEYS_SCANNED = 1_000_000
#: At most this many entries of a directory are looked at.
MAX_DIR_ENTRIES = 20_000
#: jedi signatures are computed for at most this many function completions...
MAX_SIGNATURES = 50
#: ...and for at most this long (seconds): a cold jedi takes ~5 ms per builtin signature.
SIGNATURE_TIME = 0.1

_CHECK_EVERY = 4096  # items between two deadline checks in scanning loops

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
class _Match:
    """One candidate: replace ``code[start:cursor]`` with ``text``."""

    start: int
    text: str
    type: str
    signature: str = ""


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
    error the reply has no matches and ``cursor_start == cursor_end == cursor_pos``.
    """
    try:
        pos = min(max(cursor_pos, 0), len(code))
        deadline = time.monotonic() + budget
        names = [name.lstrip("%") for name in magics]
        return _reply(code, pos, _collect(code, pos, namespace, names, deadline))
    except Exception:
        return _reply(code, cursor_pos, [])


def _reply(code: str, pos: int, matches: list[_Match]) -> dict[str, Any]:
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
) -> list[_Match]:
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


def _magic_matches(magic: re.Match[str], line_start: int, magics: list[str]) -> list[_Match]:
    lead, percents, prefix = magic.groups()
    if percents == "%%" and (line_start != 0 or lead):
        return []  # cell magics only exist on the first line of a cell
    start = line_start + magic.start(2)
    return [
        _Match(start, percents + name, "magic") for name in sorted(magics) if name.startswith(prefix)
    ]


def _argument_matches(
    line: str,
    line_start: int,
    python_args: tuple[int, Mapping[str, Any]] | None,
    deadline: float,
) -> list[_Match]:
    """Paths for the last word of a ``!cmd`` / ``%magic`` line, plus Python for magic args."""
    word_start = max(line.rfind(" "), line.rfind("\t")) + 1
    found = _path_matches(line[word_start:], line_start + word_start, deadline, quote="")
    if python_args is not None:
        args_start, namespace = python_args
        args = line[args_start:]
        python = _code_matches(args, len(args), namespace, deadline)
        found += [dataclasses.replace(m, start=m.start + line_start + args_start) for m in python]
    return found


def _string_matches(
    code: str, pos: int, context: _InString, namespace: Mapping[str, Any], deadline: float
) -> list[_Match]:
    typed = code[context.content_start : pos]
    head = code[: context.content_start - len(context.quote) - len(context.prefix)]
    subscript = _QUOTED_KEY_HEAD_RE.search(head)
    if subscript:
        found, obj = resolve(subscript.group(1), namespace)
        if found and isinstance(obj, Mapping):
            key_type: type = bytes if "b" in context.prefix.lower() else str
            keys = _key_matches(obj, (key_type,), typed, context, code[pos:], deadline)
            if keys:
                return [_Match(context.content_start, text, "dict key") for text in keys]
    if "\n" not in typed:
        paths = _path_matches(typed, context.content_start, deadline, context.quote)
        if paths:
            return paths
    if head.rstrip().endswith("["):
        return _jedi_matches(code, pos, namespace, deadline)  # e.g. a dict literal in the cell
    return []


def _code_matches(
    code: str, pos: int, namespace: Mapping[str, Any], deadline: float
) -> list[_Match]:
    before = code[:pos]
    found: list[_Match] = []
    subscript = _UNQUOTED_KEY_RE.search(before)
    if subscript:
        ok, obj = resolve(subscript.group(1), namespace)
        if ok and isinstance(obj, Mapping):
            keys = _key_matches(obj, (str, bytes, int), subscript.group(2), None, code[pos:], deadline)
            found += [_Match(subscript.start(2), text, "dict key") for text in keys]
    attribute = _ATTRIBUTE_RE.search(before)
    if attribute:
        ok, obj = resolve(attribute.group(1), namespace)
        names = _dir(obj) if ok else None
        if names is not None and len(names) > BIG_DIR:
            start = attribute.start(2)
            return found + _attribute_matches(obj, names, attribute.group(2), start, deadline)
    jedi_found = _jedi_matches(code, pos, namespace, deadline)
    if found:  # our keys already cover jedi's own (differently quoted) dict keys
        jedi_found = [m for m in jedi_found if m.type != "string"]
    return found + jedi_found


def _key_matches(
    mapping: Mapping[Any, Any],
    key_types: tuple[type, ...],
    typed: str,
    quoted: _InString | None,
    after: str,
    deadline: float,
) -> list[str]:
    """Sorted key completions for ``typed``: escaped key + closing quote/bracket if missing."""
    quote = quoted.quote if quoted else ""
    if quoted and after.startswith(quote):
        suffix = ""
    else:
        suffix = quote + ("" if after.lstrip().startswith("]") else "]")
    # Escaping only ever adds backslashes, so without one in ``typed`` a str key must start
    # with ``typed`` itself: test that first, in C, before building any text.
    quick = quoted is not None and str in key_types and "\\" not in typed
    texts: list[str] = []
    for key in _bounded(iter(mapping.keys()), MAX_KEYS_SCANNED, deadline):
        if quick and type(key) is str:
            if not key.startswith(typed):
                continue
        elif not isinstance(key, key_types) or isinstance(key, bool):
            continue
        text = _escape_key(key, quote[:1]) if quoted else repr(key)
        if text.startswith(typed):
            texts.append(text + suffix)
            if len(texts) >= MAX_MATCHES:
                break
    return sorted(texts)


def _escape_key(key: str | bytes, quote: str) -> str:
    """``key`` as it is spelled between ``quote`` characters in source code."""
    if isinstance(key, str):
        if quote not in key and "\\" not in key and key.isprintable():
            return key  # the common case, checked in C
        return "".join(_escape_char(ch, quote) for ch in key)
    return "".join(
        _escape_char(chr(byte), quote) if 0x20 <= byte < 0x7F else f"\\x{byte:02x}" for byte in key
    )


def _escape_char(ch: str, quote: str) -> str:
    if ch in ("\\", quote):
        return "\\" + ch
    return ch if ch.isprintable() else repr(ch)[1:-1]


def _path_matches(typed: str, start: int, deadline: float, quote: str) -> list[_Match]:
    """Entries of the directory ``typed`` names, relative to the cwd; ``~`` expanded."""
    if typed == "~":
        return [_Match(start, "~/", "path")]
    cut = max(typed.rfind("/"), typed.rfind(os.sep)) + 1
    typed_dir, base = typed[:cut], typed[cut:]
    directory = os.path.expanduser(typed_dir) if typed_dir else os.curdir
    names: list[str] = []
    try:
        with os.scandir(directory) as entries:
            for entry in _bounded(entries, MAX_DIR_ENTRIES, deadline):
                name = entry.name
                if not name.startswith(base) or (name[:1] == "." and base[:1] != "."):
                    continue
                if (quote and quote[0] in name) or "\\" in name or not name.isprintable():
                    continue
                names.append(name + "/" if _is_dir(entry) else name)
    except OSError:
        return []
    return [_Match(start, typed_dir + name, "path") for name in sorted(names)[:MAX_MATCHES]]


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _attribute_matches(
    obj: Any, names: list[str], prefix: str, start: int, deadline: float
) -> list[_Match]:
    """Completions of ``obj.prefix`` from ``dir(obj)``, public names first (jedi's order)."""
    picked = [name for name in names if name.startswith(prefix)]
    picked.sort(key=lambda name: (name.startswith("__"), name.startswith("_"), name))
    found = []
    for name in picked[:MAX_MATCHES]:
        kind = _attribute_kind(obj, name) if time.monotonic() < deadline else "instance"
        found.append(_Match(start, name, kind))
    return found


def _attribute_kind(obj: Any, name: str) -> str:
    """jedi's completion type for ``obj.name``, found without evaluating anything."""
    try:
        value = inspect.getattr_static(obj, name)
    except AttributeError:
        return "instance"
    if isinstance(value, types.ModuleType):
        return "module"
    if isinstance(value, type):
        return "class"
    if isinstance(value, property) or hasattr(type(value), "__set__"):
        return "property"
    if callable(value) or isinstance(value, classmethod | staticmethod):
        return "function"
    return "instance"


def _dir(obj: Any) -> list[str] | None:
    try:
        return [name for name in dir(obj) if isinstance(name, str)]
    except Exception:
        return None


def _bounded(items: Iterator[Any], limit: int, deadline: float) -> Iterator[Any]:
    """At most ``limit`` items of ``items``, stopping early once ``deadline`` has passed."""
    for index, item in enumerate(islice(items, limit)):
        if index % _CHECK_EVERY == _CHECK_EVERY - 1 and time.monotonic() >= deadline:
            return
        yield item


# -- jedi ----------------------------------------------------------------------------------


def _jedi_matches(
    code: str, pos: int, namespace: Mapping[str, Any], deadline: float
) -> list[_Match]:
    if time.monotonic() >= deadline:
        return []
    import jedi  # deferred: importing jedi costs kernel start-up ~0.1 s

    bare = _BARE_NAME_RE.search(code[:pos])
    prefix = (bare.group(1) or "") if bare else None
    line, column = line_col(code, pos)
    with _jedi_settings(jedi):
        script = jedi.Interpreter(code, [jedi_namespace(code, namespace, prefix)])
        completions = script.complete(line, column)
    found = []
    signatures_left = MAX_SIGNATURES
    signatures_until = min(deadline, time.monotonic() + SIGNATURE_TIME)
    for completion in islice(completions, MAX_MATCHES):
        signature = ""
        if completion.type == "function" and signatures_left and time.monotonic() < signatures_until:
            signatures_left -= 1
            signature = _jedi_signature(completion)
        start = pos - completion.get_completion_prefix_length()
        found.append(_Match(start, completion.name_with_symbols, completion.type, signature))
    return found


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
