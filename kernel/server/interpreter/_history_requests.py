"""``history_request`` (messaging spec, "History") answered from the history store.

Pure: no zmq, no asyncio. The store keeps inputs; outputs of the current session come from
the interpreter (the ``text/plain`` of each result), as IPython keeps them in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kernel.protocol import JSONDict

from ._history_store import HistoryEntry, HistoryStore

__all__ = ["history_reply"]


def history_reply(
    store: HistoryStore, request: JSONDict, outputs: Mapping[int, str]
) -> list[list[Any]]:
    """The ``history`` list of a ``history_reply`` for a ``history_request``'s ``request``.

    ``hist_access_type`` ``range``, ``search`` or ``tail`` (the default). With
    ``output=True`` each entry is ``[session, line, [input, output]]``, the output taken
    from ``outputs`` (line -> text) for this session's cells and ``None`` otherwise.
    """
    output = bool(request.get("output", False))
    entries = _entries(store, request, bool(request.get("raw", True)), output)
    if output:
        entries = [
            entry._replace(output=outputs.get(entry.line))
            if entry.session == store.session
            else entry
            for entry in entries
        ]
    return HistoryStore.to_reply(entries, output)


def _entries(store: HistoryStore, request: JSONDict, raw: bool, output: bool) -> list[HistoryEntry]:
    kind = request.get("hist_access_type", "tail")
    if kind == "range":
        stop = request.get("stop")
        return store.range(
            int(request.get("session", 0)),
            int(request.get("start", 1)),
            None if stop is None else int(stop),
            raw=raw,
            output=output,
        )
    if kind == "search":
        n = request.get("n")
        return store.search(
            str(request.get("pattern", "*")),
            None if n is None else int(n),
            unique=bool(request.get("unique", False)),
            raw=raw,
            output=output,
        )
    return store.tail(int(request.get("n", 10)), raw=raw, output=output)
