"""What every magic shares: its error type, option parsing, and ``{expr}``/``$name`` expansion.

Pure stdlib; no state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Options", "UsageError", "expand_vars", "split_options", "unquote"]

#: Parsed options: the option name (without dashes) -> its value, or ``True`` for a flag.
Options = dict[str, str | bool]

_TOKEN = re.compile(r"\s*(\S+)")
_DOLLAR_NAME = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)*")


class UsageError(Exception):
    """A magic was called wrongly (unknown name, bad option, missing argument).

    The kernel reports it as an ``error`` whose ``ename`` is ``UsageError``; the message is meant
    to be shown to the user on its own.
    """


def split_options(line: str, short: str = "", long: Sequence[str] = ()) -> tuple[Options, str]:
    """Split leading options off ``line``; return ``(options, rest)``.

    ``short`` is a getopt-style spec (``"n:r:q"``: ``-n`` and ``-r`` take a value, written
    ``-n5`` or ``-n 5``; ``-q`` is a flag; flags may be grouped as ``-qo``). ``long`` names long
    options, a trailing ``=`` marking those that take a value (``--out VAR`` or ``--out=VAR``).
    Parsing stops at ``--`` (which is dropped) or at the first token that is not a known option,
    so ``-1`` or ``-x`` can begin the rest; ``rest`` is the remaining text with its inner
    spacing and quoting untouched, stripped of outer whitespace.

    Raises :class:`UsageError` when an option that takes a value has none.
    """
    options: Options = {}
    pos = 0
    while (match := _TOKEN.match(line, pos)) is not None:
        token = match[1]
        after = match.end()
        if token == "--":
            pos = after
            break
        if token.startswith("--") and _long_spec(token, long) is not None:
            pos = _take_long(line, token, after, long, options)
        elif token.startswith("-") and len(token) > 1 and token[1] in short.replace(":", ""):
            pos = _take_short(line, token, after, short, options)
        else:
            break
    return options, line[pos:].strip()


def _long_spec(token: str, long: Sequence[str]) -> str | None:
    name = token[2:].partition("=")[0]
    for spec in long:
        if spec.rstrip("=") == name:
            return spec
    return None


def _take_long(line: str, token: str, after: int, long: Sequence[str], options: Options) -> int:
    spec = _long_spec(token, long)
    assert spec is not None
    name, has_value, value = token[2:].partition("=")
    if not spec.endswith("="):
        options[name] = True
        return after
    if has_value:
        options[name] = value
        return after
    match = _TOKEN.match(line, after)
    if match is None:
        raise UsageError(f"option --{name} requires an argument")
    options[name] = match[1]
    return match.end()


def _take_short(line: str, token: str, after: int, short: str, options: Options) -> int:
    letters = token[1:]
    for index, letter in enumerate(letters):
        spec_at = short.find(letter)
        if spec_at < 0 or letter == ":":
            raise UsageError(f"unknown option -{letter}")
        if not short.startswith(":", spec_at + 1):
            options[letter] = True
            continue
        attached = letters[index + 1 :]
        if attached:
            options[letter] = attached
            return after
        match = _TOKEN.match(line, after)
        if match is None:
            raise UsageError(f"option -{letter} requires an argument")
        options[letter] = match[1]
        return match.end()
    return after


def expand_vars(
    text: str, globals_: Mapping[str, Any], locals_: Mapping[str, Any] | None = None
) -> str:
    """Expand ``{expr}`` and ``$name`` in ``text`` as IPython does for shell commands and magics.

    ``{expr}`` is any Python expression, evaluated in the given namespaces and formatted with
    ``str``; ``{{`` and ``}}`` are literal braces. ``$name`` (or ``$name.attr``) is a variable;
    ``$$`` is a literal ``$``; ``$`` inside single quotes is left for the shell.

    All or nothing: if any expression fails to evaluate, ``text`` is returned unchanged, so
    ``!echo $HOME`` and ``!awk '{print $1}'`` reach the shell as typed.
    """
    if "{" not in text and "$" not in text:
        return text
    namespace = dict(globals_)
    if locals_ is not None:
        namespace.update(locals_)
    try:
        return _expand(text, namespace)
    except Exception:
        return text


def _expand(text: str, namespace: dict[str, Any]) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    in_single_quotes = False
    while i < n:
        char = text[i]
        if char == "'":
            in_single_quotes = not in_single_quotes
        if char in "{}" and text.startswith(char * 2, i):
            out.append(char)
            i += 2
        elif char == "{":
            end = _matching_brace(text, i)
            out.append(str(eval(text[i + 1 : end], namespace)))
            i = end + 1
        elif char == "}":
            raise ValueError("single '}' in format string")
        elif char == "$" and text.startswith("$$", i):
            out.append("$")
            i += 2
        elif char == "$" and not in_single_quotes and (m := _DOLLAR_NAME.match(text, i + 1)):
            out.append(str(eval(m[0], namespace)))
            i = m.end()
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _matching_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``start``; raises ``ValueError`` if none."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError("unbalanced '{'")


def unquote(text: str) -> str:
    """``text`` stripped, without one pair of matching outer quotes (``'a b'`` -> ``a b``)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text
