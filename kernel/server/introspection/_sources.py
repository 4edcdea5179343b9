"""The completion sources that work on live objects and the file system, all bounded.

Each scan looks at a bounded number of items (:data:`MAX_KEYS_SCANNED`,
:data:`MAX_DIR_ENTRIES`), checks the caller's deadline (a ``time.monotonic()`` value) every
few thousand items, and returns at most :data:`MAX_MATCHES` matches. None of them evaluates a
property or other descriptor; only ``dir()``, ``keys()`` and ``os.scandir`` are called.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
import types
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any

__all__ = [
    "MAX_MATCHES",
    "Match",
    "attribute_matches",
    "key_matches",
    "list_attributes",
    "name_matches",
    "path_matches",
]

#: No reply carries more matches than this.
MAX_MATCHES = 1000
#: At most this many keys of a mapping are looked at.
MAX_KEYS_SCANNED = 1_000_000
#: At most this many entries of a directory are looked at.
MAX_DIR_ENTRIES = 20_000

_CHECK_EVERY = 4096  # items between two deadline checks in scanning loops


@dataclasses.dataclass(frozen=True, slots=True)
class Match:
    """One candidate: replace ``code[start:cursor]`` with ``text``."""

    start: int
    text: str
    type: str
    signature: str = ""


def key_matches(
    mapping: Mapping[Any, Any],
    key_types: tuple[type, ...],
    typed: str,
    quote: str | None,
    after: str,
    deadline: float,
) -> list[str]:
    """Sorted completions of the keys of ``mapping`` of ``key_types`` that start with ``typed``.

    Inside a literal opened by ``quote`` a key is spelled escaped for that quote, otherwise
    (``quote`` None) as its ``repr``; the closing quote and ``]`` are appended unless ``after``
    (the code after the cursor) already has them.
    """
    quoted = quote is not None
    quote = quote or ""
    if quoted and after.startswith(quote):
        suffix = ""
    else:
        suffix = quote + ("" if after.lstrip().startswith("]") else "]")
    # Escaping only ever adds backslashes, so without one in ``typed`` a str key must start
    # with ``typed`` itself: test that first, in C, before building any text.
    quick = quoted and str in key_types and "\\" not in typed
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


def path_matches(typed: str, start: int, deadline: float, quote: str) -> list[Match]:
    """Entries of the directory ``typed`` names, relative to the cwd; ``~`` expanded."""
    if typed == "~":
        return [Match(start, "~/", "path")]
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
    return [Match(start, typed_dir + name, "path") for name in sorted(names)[:MAX_MATCHES]]


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def attribute_matches(
    obj: Any, names: list[str], prefix: str, start: int, deadline: float
) -> list[Match]:
    """Completions of ``obj.prefix`` from ``dir(obj)``, public names first (jedi's order)."""
    picked = [name for name in names if name.startswith(prefix)]
    picked.sort(key=lambda name: (name.startswith("__"), name.startswith("_"), name))
    found = []
    for name in picked[:MAX_MATCHES]:
        kind = _attribute_kind(obj, name) if time.monotonic() < deadline else "instance"
        found.append(Match(start, name, kind))
    return found


def _attribute_kind(obj: Any, name: str) -> str:
    """jedi's completion type for ``obj.name``, found without evaluating anything."""
    try:
        return _kind(inspect.getattr_static(obj, name))
    except AttributeError:
        return "instance"


def _kind(value: Any) -> str:
    """jedi's completion type for a name bound to ``value`` (descriptors unevaluated)."""
    if isinstance(value, types.ModuleType):
        return "module"
    if isinstance(value, type):
        return "class"
    if isinstance(value, property) or hasattr(type(value), "__set__"):
        return "property"
    if callable(value) or isinstance(value, classmethod | staticmethod):
        return "function"
    return "instance"


def name_matches(
    namespace: Mapping[str, Any], prefix: str, start: int, deadline: float
) -> list[Match]:
    """Names of ``namespace`` starting with ``prefix``, sorted as jedi sorts them."""
    names = [
        name
        for name in _bounded(iter(namespace), MAX_KEYS_SCANNED, deadline)
        if isinstance(name, str) and name.startswith(prefix)
    ]
    names.sort(key=lambda name: (name.startswith("__"), name.startswith("_"), name.lower()))
    return [Match(start, name, _kind(namespace[name])) for name in names[:MAX_MATCHES]]


def list_attributes(obj: Any) -> list[str] | None:
    """``dir(obj)``'s string names, or None when ``dir`` fails."""
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
