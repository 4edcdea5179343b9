"""What magics may use of the interpreter they run in: :class:`MagicContext`.

Magic modules depend on this Protocol, not on ``Interpreter``: the interpreter imports
the magic registry, and a reference back to the whole class made the two rooms one
import cycle (under ``TYPE_CHECKING``). Any object with these members can host the magics,
so a magic family can be tested against a small fake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from types import TracebackType

    from kernel.protocol import JSONDict
    from kernel.server.interpreter._display import Display
    from kernel.server.interpreter._history_store import HistoryStore

__all__ = ["MagicContext"]


class MagicContext(Protocol):
    """The interpreter as magics see it."""

    #: The user's namespace (``%who``, ``%reset``, ``%store`` act on it).
    user_ns: dict[str, Any]
    #: Payloads of the running cell's reply (``%load`` fills the next cell; ``?`` pages).
    payload: list[JSONDict]
    #: The input history (``%history``).
    history: HistoryStore
    #: ``display()`` and friends (``%%capture`` replays outputs, inline figures).
    display: Display
    #: The number the running cell has (or the next cell will have).
    execution_count: int
    #: Publish an iopub message, parented to the running request.
    publish: Callable[[str, JSONDict], None]
    #: How errors are reported (``%xmode``): Plain, Context, Verbose, Minimal or Docs.
    xmode: str
    #: The last error's traceback (``%debug``), and whether errors start pdb (``%pdb``).
    last_traceback: TracebackType | None
    call_pdb: bool
    #: Files under these paths are the kernel's: hidden from tracebacks and the debugger.
    hidden_prefixes: list[str]

    def debug_post_mortem(self, tb: TracebackType) -> None:
        """Run pdb on ``tb`` at the front end's prompt."""
        ...

    def cell_filename(self, count: int) -> str:
        """The file name a cell's code is compiled under (``<cell-N>``)."""
        ...
