"""Tab completion inside ``%px`` code, from an engine's namespace.

ipyparallel completes ``%px`` code locally, so names defined on the engines are missing.
Here a completion request whose cursor is in code bound for the engines (the body of a
``%%px`` cell, the code of a ``%px`` line, any cell while ``%autopx`` is on) is answered
by the first engine of the magics' targets:

- :func:`locate` (pure) finds that code, where the cursor is in it, and which set of
  magics (suffix) it belongs to;
- :func:`complete_on_engine` runs Loom's completer on the engine, in the engine's
  namespace (a function defined in ``__main__`` runs there with the engine's namespace
  as its globals, as every ``apply`` does), and shifts the reply back into the cell.

An engine that does not answer within :data:`COMPLETE_TIMEOUT` (busy with a cell) gives
no reply, and the kernel completes locally as usual.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._px_run import Waiter, wait_on_loop

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ..client._views import DirectView

__all__ = ["COMPLETE_TIMEOUT", "EngineCode", "complete_on_engine", "locate"]

#: Seconds a completion waits for the engine before the kernel completes locally (an
#: engine's first completion imports the completer and jedi: about a second, more on a
#: loaded machine; later ones take tens of milliseconds).
COMPLETE_TIMEOUT = 3.0
#: Options of ``%px`` that take a value as the next word.
_VALUED = {"-t", "--targets", "-o", "--out", "--signal-on-interrupt", "--progress-after"}
_VALUED |= {"--group-outputs"}


@dataclass(frozen=True, slots=True)
class EngineCode:
    """The engine-bound part of a cell: ``code[start:end]`` of the cell, the cursor in it."""

    suffix: str
    code: str
    cursor: int
    offset: int  # where ``code`` starts in the cell


def locate(
    cell: str, cursor: int, suffixes: Iterable[str], autopx: str | None = None
) -> EngineCode | None:
    """Where the engine-bound code around ``cursor`` is; None if the cursor is not in any.

    ``suffixes``: the magic sets loaded (``""`` for ``%px``, ``"0"`` for ``%px0``...);
    ``autopx``: the suffix whose ``%autopx`` is on, if any.
    """
    cursor = max(0, min(cursor, len(cell)))
    names = sorted(suffixes, key=len, reverse=True)  # %px0 before %px
    first_end = cell.find("\n")
    first = cell if first_end < 0 else cell[:first_end]
    for suffix in names:
        if re.match(rf"\s*%%px{re.escape(suffix)}(\s|$)", first):
            if first_end < 0 or cursor <= first_end:
                return None  # on the magic's own line: its options, not engine code
            start = first_end + 1
            return EngineCode(suffix, cell[start:], cursor - start, start)
    line_start = cell.rfind("\n", 0, cursor) + 1
    line_end = cell.find("\n", cursor)
    line = cell[line_start : len(cell) if line_end < 0 else line_end]
    for suffix in names:
        magic = re.match(rf"(\s*%px{re.escape(suffix)})(\s|$)", line)
        if magic is None:
            continue
        start = line_start + _code_start(line, magic.end(1))
        if cursor < start:
            return None  # among the options
        return EngineCode(suffix, cell[start : line_start + len(line)], cursor - start, start)
    if autopx is not None and not re.match(rf"\s*%autopx{re.escape(autopx)}\b", first):
        return EngineCode(autopx, cell, cursor, 0)
    return None


def _code_start(line: str, index: int) -> int:
    """Where the code of a ``%px`` line starts: after the options that follow ``index``."""
    while True:
        word = re.compile(r"\s*(\S+)").match(line, index)
        if word is None:
            return len(line)
        token = word.group(1)
        if token == "--":
            return re.compile(r"\s*").match(line, word.end()).end()  # type: ignore[union-attr]
        if not token.startswith("-"):
            return word.start(1)
        index = word.end()
        if token in _VALUED:  # its value is the next word
            value = re.compile(r"\s*\S+").match(line, index)
            index = value.end() if value is not None else len(line)


def _engine_completer() -> Callable[[str, int], dict[str, Any]]:
    """The function that completes on the engine, as if typed in ``__main__``: the engine
    runs it with its own namespace as ``globals()``."""
    source = (
        "def _loom_px_complete(code, cursor):\n"
        "    from kernel.server.introspection._completion import complete\n"
        "    return complete(code, cursor, globals(), budget=0.5)\n"
    )
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "<%px completion>", "exec"), namespace)
    return namespace["_loom_px_complete"]  # type: ignore[no-any-return]


async def complete_on_engine(
    view: DirectView,
    engine: int,
    found: EngineCode,
    wait: Waiter = wait_on_loop,
    timeout: float = COMPLETE_TIMEOUT,
) -> dict[str, Any] | None:
    """The ``complete_reply`` content (no ``status``) for ``found``, from ``engine``'s
    namespace, positions in the cell; None if the engine did not answer in time."""
    client = view.client
    result = client[engine].apply_async(_engine_completer(), found.code, found.cursor)
    await wait(client, result.done, timeout)
    if not result.done():
        return None
    try:
        reply = result.result()
    except Exception:
        return None
    if not isinstance(reply, dict):
        return None
    return shift(reply, found.offset)


def shift(reply: dict[str, Any], offset: int) -> dict[str, Any]:
    """A completion reply for engine code, with positions moved by ``offset`` into the cell."""
    moved = dict(reply)
    moved["cursor_start"] = int(reply.get("cursor_start", 0)) + offset
    moved["cursor_end"] = int(reply.get("cursor_end", 0)) + offset
    metadata = dict(reply.get("metadata") or {})
    types = metadata.get("_jupyter_types_experimental")
    if isinstance(types, list):
        metadata["_jupyter_types_experimental"] = [
            {**t, "start": int(t.get("start", 0)) + offset, "end": int(t.get("end", 0)) + offset}
            for t in types
            if isinstance(t, dict)
        ]
    moved["metadata"] = metadata
    return moved
