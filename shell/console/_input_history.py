"""Console input history: a local file plus the kernel's own history.

The file (prompt_toolkit's ``FileHistory`` format) lives at
``$LOOM_CONSOLE_HISTORY`` if set, else ``$XDG_DATA_HOME/loom/console_history``
(``~/.local/share/loom/console_history``). prompt_toolkit reads it in a
background task once the first prompt is up, so start-up never waits for it
(and no ``ThreadedHistory``: the console runs no threads).

The kernel's history (``history_request``, ``tail``) is fetched in the
background too and merged *behind* the file's entries, skipping duplicates;
it shows from the next prompt on. Entries persist only in the file: the
kernel keeps its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from prompt_toolkit.history import FileHistory

from ._ptk_private import add_older_history

if TYPE_CHECKING:
    from kernel.protocol import JSONDict

__all__ = ["ConsoleHistory", "history_path", "kernel_history_entries"]


def history_path() -> Path:
    """Where the console keeps its history (see the module docstring)."""
    override = os.environ.get("LOOM_CONSOLE_HISTORY")
    if override:
        return Path(override)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "loom" / "console_history"


class ConsoleHistory(FileHistory):
    """``FileHistory`` that can absorb the kernel's entries as older ones."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or history_path()
        super().__init__(str(self.path))
        self._kernel_entries: list[str] = []

    def load_history_strings(self) -> Iterable[str]:
        # Newest first, as prompt_toolkit wants: the file's, then the kernel's.
        local: list[str] = []
        with contextlib.suppress(OSError):  # an unreadable file must not break the console
            local = list(super().load_history_strings())
        seen = set(local)
        yield from local
        yield from (entry for entry in reversed(self._kernel_entries) if entry not in seen)

    def store_string(self, string: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            super().store_string(string)
        except OSError:
            pass  # e.g. a read-only home: keep the session's history in memory only

    def add_kernel_entries(self, entries: Iterable[str]) -> None:
        """Merge the kernel's history (oldest first) behind what is loaded.

        Entries already present are skipped. Takes effect at the next prompt.
        """
        known = set(self.get_strings()) | set(self._kernel_entries)
        fresh = [e for e in dict.fromkeys(entries) if e.strip() and e not in known]
        self._kernel_entries = fresh + self._kernel_entries
        # Once loaded, prompt_toolkit reads its own list, not load_history_strings.
        add_older_history(self, reversed(fresh))


def kernel_history_entries(reply: JSONDict) -> list[str]:
    """The input strings of a ``history_reply`` content, oldest first."""
    out = []
    for item in reply.get("history") or []:
        if isinstance(item, list | tuple) and len(item) >= 3:
            source = item[2]
            if isinstance(source, list | tuple):  # (input, output) when output=True
                source = source[0]
            if isinstance(source, str):
                out.append(source.rstrip("\n"))
    return out
