"""The options of ``%px``, ``%%px``, ``%pxconfig`` and ``%pxresult``: pure parsing.

ipyparallel's option names and meanings (``ipyparallel/client/magics.py``):

========================================  ===================================================
``-t/--targets T``                        engines: ``0``, ``0,2``, ``[0, 2]``, ``::2``,
                                          ``-1``, ``all``
``-b/--block``, ``-a/--noblock``          wait for the result, or return an ``AsyncResult``
``--stream``, ``--no-stream``             show output as it arrives, or when all is done
``--group-outputs=engine|order|type``     how finished output is grouped (``-e``, ``-r``)
``-o/--out NAME``                         keep the ``AsyncResult`` as ``NAME``
``--local``                               ``%%px`` only: run the cell here too
``--verbose``, ``--no-verbose``           say where the code runs
``--signal-on-interrupt SIG``             sent to the engines on Ctrl-C (``SIGINT``, ``9``,
                                          ``0``: none)
``--progress-after S``                    seconds before progress shows (``-1``: never)
``--setup``                               ``%px``/``%%px``: also record the code as setup,
                                          replayed on engines that replace dead ones
========================================  ===================================================

Unlike ipyparallel, ``%px`` (the line magic) accepts the options too, before the code:
``%px -t 0 print(a)``. Code starting with ``-`` that looks like an option needs ``--``
first (``%px -- -b``). Nothing here evaluates user text: targets are parsed, not
``eval``-ed.
"""

from __future__ import annotations

import functools
import re
import signal
from dataclasses import dataclass, replace
from typing import Literal

__all__ = [
    "GROUPINGS",
    "Kind",
    "PxArgs",
    "PxUsageError",
    "Targets",
    "parse_px",
    "parse_signal",
    "parse_targets",
]

Targets = int | slice | list[int] | Literal["all"]
Kind = Literal["px", "cell", "config", "result"]
GROUPINGS = ("engine", "order", "type")


class PxUsageError(ValueError):
    """A magic was given options it does not understand; the message is one line."""


@dataclass(frozen=True, slots=True)
class PxArgs:
    """What a ``%px``-family line asked for; ``None`` means "the configured default"."""

    targets: Targets | None = None
    block: bool | None = None
    stream: bool | None = None
    groupby: str | None = None
    save_name: str | None = None
    local: bool = False
    verbose: bool | None = None
    #: The signal number sent on Ctrl-C; ``0`` sends none.
    signal: int | None = None
    progress_after: float | None = None
    #: ``--setup``: record the code with the controller (``view.setup``) as it runs.
    setup: bool = False
    #: ``%px`` only: the code after the options.
    code: str = ""


_EXEC = frozenset(
    [
        "-t",
        "--targets",
        "-b",
        "--block",
        "-a",
        "--noblock",
        "--stream",
        "--no-stream",
        "--verbose",
        "--no-verbose",
        "--progress-after",
        "--signal-on-interrupt",
    ]
)
_OUTPUT = frozenset(["-e", "-r", "--group-outputs", "-o", "--out"])
_ALLOWED: dict[str, frozenset[str]] = {
    "px": _EXEC | _OUTPUT | {"--setup"},
    "cell": _EXEC | _OUTPUT | {"--local", "--setup"},
    "config": _EXEC | {"--group-outputs", "-e", "-r"},
    "result": _OUTPUT,
}
#: Options that take a value.
_VALUED = frozenset(
    [
        "-t",
        "--targets",
        "--progress-after",
        "--signal-on-interrupt",
        "--group-outputs",
        "-o",
        "--out",
    ]
)
_FLAGS: dict[str, tuple[str, object]] = {
    "-b": ("block", True),
    "--block": ("block", True),
    "-a": ("block", False),
    "--noblock": ("block", False),
    "--stream": ("stream", True),
    "--no-stream": ("stream", False),
    "--verbose": ("verbose", True),
    "--no-verbose": ("verbose", False),
    "-e": ("groupby", "engine"),
    "-r": ("groupby", "order"),
    "--local": ("local", True),
    "--setup": ("setup", True),
}
_NAME = re.compile(r"[^\W\d]\w*\Z")
_SLICE_PART = re.compile(r"\s*(-?\d+)?\s*\Z")


@functools.lru_cache(maxsize=256)
def parse_px(line: str, kind: Kind = "px") -> PxArgs:
    """Parse the options of one magic line.

    Cached (the result is frozen; errors are not cached): a loop of ``%px`` calls, or
    ``%autopx`` cells, parse the same few lines again and again.

    ``kind`` says which magic: ``"px"`` (options, then code: the first token that is not
    an option of ``%px`` starts the code, as does ``--``), ``"cell"`` (the ``%%px`` line:
    options only), ``"config"`` (``%pxconfig``), ``"result"`` (``%pxresult``).

    Raises :class:`PxUsageError` with a one-line message naming the problem (an unknown
    option, a missing or bad value, stray text, or no code for ``%px``).
    """
    allowed = _ALLOWED[kind]
    args = PxArgs()
    rest = line.strip()
    while rest:
        token, after = _next_token(rest)
        if token == "--" and kind == "px":
            rest = after
            break
        option = token.partition("=")[0]
        if option not in allowed:
            if kind == "px" and not _looks_like_option(option):
                break  # the code starts here
            raise PxUsageError(_unknown(option, kind))
        args, rest = _apply_option(args, token, after, kind)
    if kind == "px":
        if not rest.strip():
            raise PxUsageError("%px needs code to run, e.g. %px import numpy")
        return replace(args, code=rest)
    return args


def _apply_option(args: PxArgs, token: str, after: str, kind: Kind) -> tuple[PxArgs, str]:
    """``args`` with the option ``token`` (its value inline or the next token) applied,
    and the text after it."""
    option, eq, inline = token.partition("=")
    if option in _VALUED:
        if eq:
            value = inline
        elif after:
            value, after = _next_token(after)
        else:
            raise PxUsageError(f"%{_magic(kind)}: {option} needs a value")
        return _with_value(args, option, _unquote(value), kind), after
    if eq:
        raise PxUsageError(f"%{_magic(kind)}: {option} takes no value")
    field, constant = _FLAGS[option]
    return replace(args, **{field: constant}), after  # type: ignore[arg-type]


def _looks_like_option(token: str) -> bool:
    """A ``--word`` that is no option of ``%px``: a typo to report, not code to run.

    (``-x`` may be Python, ``--x`` cannot begin a statement that means anything.)
    """
    return token.startswith("--") and len(token) > 2 and token[2].isalpha()


def _with_value(args: PxArgs, option: str, value: str, kind: Kind) -> PxArgs:
    magic = _magic(kind)
    if option in ("-t", "--targets"):
        return replace(args, targets=parse_targets(value))
    if option == "--group-outputs":
        if value not in GROUPINGS:
            raise PxUsageError(
                f"%{magic}: --group-outputs must be engine, order or type, not {value!r}"
            )
        return replace(args, groupby=value)
    if option in ("-o", "--out"):
        if not _NAME.match(value):
            raise PxUsageError(f"%{magic}: {option} needs a variable name, not {value!r}")
        return replace(args, save_name=value)
    if option == "--signal-on-interrupt":
        return replace(args, signal=parse_signal(value))
    try:
        seconds = float(value)
    except ValueError:
        raise PxUsageError(
            f"%{magic}: --progress-after needs seconds (-1: never), not {value!r}"
        ) from None
    return replace(args, progress_after=seconds)


def parse_targets(text: str) -> Targets:
    """``all``, an engine id (``2``, ``-1``), ids (``0,2``, ``[0, 2]``) or a slice (``::2``).

    Raises :class:`PxUsageError` for anything else.
    """
    text = text.strip()
    if text == "all":
        return "all"
    if ":" in text:
        parts = text.split(":")
        matches = [_SLICE_PART.match(part) for part in parts]
        if len(parts) <= 3 and all(matches):
            bounds = [int(m.group(1)) if m and m.group(1) else None for m in matches]
            if len(bounds) == 3 and bounds[2] == 0:
                raise PxUsageError("targets: a slice step cannot be 0")
            return slice(*bounds)
    else:
        inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        items = [item.strip() for item in inner.split(",")]
        if items and all(re.fullmatch(r"-?\d+", item) for item in items):
            ids = [int(item) for item in items]
            return ids[0] if len(ids) == 1 and inner == text else ids
    raise PxUsageError(
        f"targets must be all, an engine id, ids like 0,2 or a slice like ::2; not {text!r}"
    )


def parse_signal(text: str) -> int:
    """A signal by number (``9``, ``0`` for none) or name (``SIGINT``, ``INT``)."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise PxUsageError(f"--signal-on-interrupt: no signal named {text!r}") from None


def _next_token(text: str) -> tuple[str, str]:
    """The first token of ``text`` (quoted, ``[...]``, or up to whitespace) and the rest."""
    text = text.lstrip()
    if text[:1] in ("'", '"'):
        end = text.find(text[0], 1)
        if end > 0:
            return text[: end + 1], text[end + 1 :].lstrip()
    match = re.match(r"(?:[^\s\[]|\[[^\]]*\]?)+", text)
    token = match.group(0) if match else text.split(None, 1)[0]
    return token, text[len(token) :].lstrip()


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in ("'", '"'):
        return value[1:-1]
    return value


def _magic(kind: Kind) -> str:
    return {"px": "px", "cell": "%px", "config": "pxconfig", "result": "pxresult"}[kind]


#: How the options are named in usage lines, each by the option that stands for it.
_USAGE = (
    ("-t", "-t/--targets T"),
    ("-b", "-b/--block"),
    ("-a", "-a/--noblock"),
    ("--stream", "--stream/--no-stream"),
    ("--group-outputs", "--group-outputs=engine|order|type"),
    ("-o", "-o/--out NAME"),
    ("--local", "--local"),
    ("--setup", "--setup"),
    ("--verbose", "--verbose/--no-verbose"),
    ("--signal-on-interrupt", "--signal-on-interrupt SIG"),
    ("--progress-after", "--progress-after S"),
)


def _options(kind: Kind) -> str:
    return "options: " + ", ".join(text for option, text in _USAGE if option in _ALLOWED[kind])


def _unknown(option: str, kind: Kind) -> str:
    what = "unknown option" if option.startswith("-") else "unexpected"
    return f"%{_magic(kind)}: {what} {option!r}; {_options(kind)}"
