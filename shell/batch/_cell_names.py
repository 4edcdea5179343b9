"""Tracebacks in ``loom run``'s own numbering of cells.

A kernel names the cell a traceback frame is in by its execution count:
``Cell In[2], line 2`` (IPython's format, which Loom's kernel shares). ``loom
run`` numbers cells from 0 in document order (``cell 1 (err.py:3)``, as in
its ``--json`` records and notebooks). :class:`CellNames` learns which
execution count ran which cell (from ``execute_input``) and rewrites those
frame headers in the text shown to people: ``cell 1 (err.py:4)`` for a
script (the file's own line), ``cell 1, line 2`` for a notebook. Counts it
did not see run (another client's cells) are left as the kernel wrote them.
The colours around the header are kept.
"""

from __future__ import annotations

import re

from ._source import Cell

__all__ = ["CellNames"]

_SGR = r"(?:\x1b\[[0-9;]*m)*"
#: ``Cell In[N], line L``, with the colour codes either kernel puts between the parts.
_HEADER = re.compile(rf"Cell{_SGR} {_SGR}In\[(\d+)\]{_SGR}, line {_SGR}(\d+)({_SGR})")
_RESET = "\x1b[39;49;00m"


class CellNames:
    """Execution counts to cells of one document (``label``: its name in messages)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._cells: dict[int, Cell] = {}

    def ran(self, execution_count: object, cell: Cell) -> None:
        """``cell`` was sent and the kernel gave it ``execution_count``."""
        if isinstance(execution_count, int) and not isinstance(execution_count, bool):
            self._cells[execution_count] = cell

    def where(self, execution_count: int, line: int) -> str | None:
        """Our name for line ``line`` (1-based) of the cell run as ``execution_count``."""
        cell = self._cells.get(execution_count)
        if cell is None:
            return None
        if cell.line is None:
            return f"cell {cell.index}, line {line}"
        return f"cell {cell.index} ({self.label}:{cell.line + line - 1})"

    def rename(self, text: str) -> str:
        """``text`` with every ``Cell In[N], line L`` of a known count in our numbering."""

        def header(match: re.Match[str]) -> str:
            name = self.where(int(match.group(1)), int(match.group(2)))
            if name is None:
                return match.group(0)
            coloured = "\x1b[" in match.group(0)
            return name + (_RESET if coloured else "")

        return _HEADER.sub(header, text) if "Cell" in text else text
