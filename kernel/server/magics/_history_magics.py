"""``%history``: print input history from the interpreter's :class:`HistoryStore`."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kernel.server.interpreter._history_store import HistoryEntry

from ._args import UsageError, split_options

if TYPE_CHECKING:
    from ._registry import Magics

__all__ = ["load_history_magics", "parse_ranges"]

#: One range: ``[~S/]N``, ``[~S/]N-[~S/]M`` (inclusive), ``N:M`` (a slice), ``~S/`` (a session).
_RANGE = re.compile(
    r"(?:(?P<startsess>~?\d+)/)?(?P<start>\d+)?"
    r"(?:(?P<sep>[-:])(?:(?P<endsess>~?\d+)/)?(?P<end>\d*))?$"
)
_WIDTH = 4


def load_history_magics(magics: Magics) -> None:
    """Register ``%history`` (and its short name ``%hist``) on ``magics``."""
    history = _HistoryMagics(magics)
    magics.register_line("history", history.history)
    magics.register_line("hist", history.history)


def parse_ranges(text: str) -> Iterator[tuple[int, int, int | None]]:
    """``(session, start, stop)`` triples for ``%history`` ranges, as IPython reads them.

    ``4`` is line 4, ``4-6`` lines 4 to 6, ``4:6`` lines 4 and 5, ``4-`` line 4 on; a
    ``S/`` prefix names session S (``~S/``: S sessions ago), and ``~S/`` alone a whole session.
    ``stop`` is exclusive (``None``: to the end); sessions are as :meth:`HistoryStore.range`
    takes them. An empty text is the whole current session. Raises :class:`UsageError` for
    text that is not a range.
    """
    if not text.strip():
        yield (0, 1, None)
        return
    for part in text.split():
        match = _RANGE.match(part)
        if match is None or not (match["start"] or match["startsess"]):
            raise UsageError(f"%history: not a history range: {part!r}")
        start_session = _session(match["startsess"])
        end_session = _session(match["endsess"]) if match["endsess"] else start_session
        if not match["start"]:
            yield (start_session, 1, None)
            continue
        start = int(match["start"])
        end = match["end"]
        if match["sep"] == "-":
            stop = int(end) + 1 if end else None
        elif match["sep"] == ":":
            stop = int(end) if end else None
        else:
            stop = start + 1
        if end_session == start_session:
            yield (start_session, start, stop)
            continue
        yield (start_session, start, None)
        for session in range(start_session + 1, end_session):
            yield (session, 1, None)
        yield (end_session, 1, stop)


def _session(text: str | None) -> int:
    if not text:
        return 0
    return -int(text[1:]) if text.startswith("~") else int(text)


class _HistoryMagics:
    def __init__(self, magics: Magics) -> None:
        self._magics = magics

    def history(self, line: str) -> None:
        """Print input history (the cells you ran, this session and before).

        Usage: ``%history [-n] [-o] [-p] [-u] [-l N] [-g PATTERN] [-f FILE] [RANGES]``

        With no range, the current session. Ranges: ``4`` (cell 4), ``4-6`` (4 to 6),
        ``4:6`` (4 and 5), ``~1/`` (the previous session), ``~2/3-5`` (cells 3 to 5 of two
        sessions ago), several separated by spaces.

        Options:
          -n          number the cells (``session/line`` for other sessions)
          -o          also print each cell's output (current session, from ``Out``)
          -p          add ``>>>`` prompts
          -l N        the last N cells (not counting this one)
          -g PATTERN  cells containing PATTERN (glob; -l limits, -u drops repeats), numbered
          -f FILE     write to FILE instead of printing
        """
        options, rest = split_options(line, "noprul:g:f:")
        store = self._magics.interpreter.history
        numbered = bool(options.get("n"))
        limit = options.get("l")
        if "g" in options:
            pattern = f"*{options['g']} {rest}*" if rest else f"*{options['g']}*"
            entries = store.search(
                pattern, _count(limit) if limit else None, unique=bool(options.get("u"))
            )
            numbered = True
        elif limit is not None:
            entries = store.tail(_count(limit), include_latest=False)
        else:
            entries = [e for args in parse_ranges(rest) for e in store.range(*args)]
        output, prompts = bool(options.get("o")), bool(options.get("p"))
        target = options.get("f")
        if isinstance(target, str):
            with Path(target).expanduser().open("w", encoding="utf-8") as file:
                self._print(entries, file, numbered, output, prompts)
        else:
            self._print(entries, sys.stdout, numbered, output, prompts)

    def _print(
        self, entries: list[HistoryEntry], file: TextIO, numbered: bool, output: bool, prompts: bool
    ) -> None:
        store = self._magics.interpreter.history
        outputs = self._magics.interpreter.user_ns.get("Out", {})
        for entry in entries:
            source = entry.source.expandtabs(4).rstrip()
            multiline = "\n" in source
            if numbered:
                label = (
                    str(entry.line)
                    if entry.session == store.session
                    else (f"{entry.session}/{entry.line}")
                )
                print(f"{label.rjust(_WIDTH)}:{chr(10) if multiline else ' '}", end="", file=file)
            if prompts:
                print(">>> ", end="", file=file)
                if multiline:
                    source = "\n... ".join(source.splitlines()) + "\n..."
            print(source, file=file)
            if output and entry.session == store.session and entry.line in outputs:
                print(repr(outputs[entry.line]), file=file)


def _count(value: str | bool) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise UsageError(f"%history -l: not a number: {value!r}") from None
