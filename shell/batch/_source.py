"""What ``loom run`` executes: cells read from a script, a notebook or stdin.

Pure and synchronous (no kernel, no asyncio): :func:`load_document` turns the
command line's SOURCE into a :class:`Document`, a list of :class:`Cell`.

Scripts are split in the "percent" format that Jupytext, VS Code, Spyder and
PyCharm share: a line starting with ``# %%`` (or ``#%%``) begins a cell, and
``# %% [markdown]`` (or ``[md]``, ``[raw]``) begins a text cell that is not run.
Cells are numbered from 0 in document order, text cells included, as nbformat
numbers a notebook's cells, so ``cell`` in ``--json`` records and the index of
the cell in a notebook written with ``-o`` agree.

Notebooks are read with nbformat (upgraded to v4 and validated); only their
code cells run. nbformat is imported lazily, when a notebook is involved.
"""

from __future__ import annotations

import importlib
import itertools
import json
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "BatchInputError",
    "Cell",
    "Document",
    "load_document",
    "nbformat_module",
    "split_script",
]

CellKind = Literal["code", "markdown", "raw"]

#: A cell marker: ``# %%`` with anything after it (a title, ``[markdown]``, metadata).
_MARKER = re.compile(r"^# ?%%(?=\s|$)(?P<rest>.*)$")
_TEXT_KIND = re.compile(r"\[(?P<kind>markdown|md|raw)\]")
#: nbclient's tags: run a cell whose error is expected / do not run a cell.
RAISES_TAG = "raises-exception"
SKIP_TAG = "skip-execution"


class BatchInputError(Exception):
    """SOURCE cannot be read, is not a valid notebook, or the options do not fit it."""


@dataclass(frozen=True, slots=True)
class Cell:
    """One cell; ``line`` is where its source starts in a script (1-based), else None."""

    index: int
    kind: CellKind
    source: str
    line: int | None = None
    tags: frozenset[str] = frozenset()

    @property
    def is_runnable(self) -> bool:
        """A code cell with code in it that is not tagged ``skip-execution``."""
        return self.kind == "code" and bool(self.source.strip()) and SKIP_TAG not in self.tags

    def describe(self, label: str) -> str:
        """``"cell 2 (script.py:10)"``, or ``"cell 2"`` when there is no line."""
        if self.line is None:
            return f"cell {self.index}"
        return f"cell {self.index} ({label}:{self.line})"


@dataclass(slots=True)
class Document:
    """The cells of SOURCE; ``notebook`` is the parsed notebook for ``.ipynb`` input."""

    label: str
    cells: list[Cell]
    path: Path | None = None
    notebook: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def runnable(self) -> list[Cell]:
        return [cell for cell in self.cells if cell.is_runnable]


def nbformat_module() -> Any:
    """Import nbformat, or raise :class:`BatchInputError` saying how to get it."""
    try:
        return importlib.import_module("nbformat")
    except ImportError as exc:
        raise BatchInputError("notebooks need the nbformat package (pip install nbformat)") from exc


# -- scripts --------------------------------------------------------------------


def split_script(text: str, *, split: bool = True) -> list[Cell]:
    """Split a script at ``# %%`` markers; one code cell if ``split`` is false or none exist.

    The marker line belongs to no cell. Lines before the first marker form a cell
    of their own when they hold more than blank lines. Markdown cells lose the
    ``# `` that comments their lines out. Leading and trailing blank lines of a
    cell are dropped (``line`` accounts for that).
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _MARKER.match(line)] if split else []
    if not starts:
        return [_make_cell(0, "code", lines, 0)]
    cells: list[Cell] = []
    if any(line.strip() for line in lines[: starts[0]]):
        cells.append(_make_cell(0, "code", lines[: starts[0]], 0))
    bounds = [*starts, len(lines)]
    for start, end in itertools.pairwise(bounds):
        match = _MARKER.match(lines[start])
        assert match is not None  # start was found by this pattern
        kind = _marker_kind(match.group("rest"))
        body = lines[start + 1 : end]
        if kind != "code":
            body = [_uncomment(line) for line in body]
        cells.append(_make_cell(len(cells), kind, body, start + 1))
    return cells


def _marker_kind(rest: str) -> CellKind:
    found = _TEXT_KIND.search(rest)
    if found is None:
        return "code"
    return "raw" if found.group("kind") == "raw" else "markdown"


def _uncomment(line: str) -> str:
    """``"# text"`` -> ``"text"``; ``"#"`` -> ``""`` (Jupytext's commented markdown)."""
    if line.startswith("# "):
        return line[2:]
    return line[1:] if line.startswith("#") else line


def _make_cell(index: int, kind: CellKind, body: list[str], offset: int) -> Cell:
    """A cell from ``body`` (which starts at 0-based line ``offset``), trimmed of blank edges."""
    first = 0
    while first < len(body) and not body[first].strip():
        first += 1
    last = len(body)
    while last > first and not body[last - 1].strip():
        last -= 1
    return Cell(index, kind, "\n".join(body[first:last]), line=offset + first + 1)


# -- notebooks --------------------------------------------------------------------


def parse_notebook(text: str, label: str) -> dict[str, Any]:
    """Parse and validate notebook JSON as nbformat v4; :class:`BatchInputError` if invalid."""
    nbformat = nbformat_module()
    # nbformat.reads() only *logs* validation errors; do its steps and raise instead.
    # Its warnings (e.g. missing cell ids, which it fixes) are not the user's problem.
    if not _looks_like_notebook(text):
        raise BatchInputError(f"{label} is not a notebook: no top-level 'nbformat' key")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            notebook = nbformat.convert(nbformat.reader.reads(text), 4)
            nbformat.validate(notebook)
        except nbformat.ValidationError as exc:
            reason = str(exc).strip().splitlines()[0]
            raise BatchInputError(f"{label} is not a valid notebook: {reason}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # NotJSONError and NBFormatError are ValueErrors; odd JSON trips the rest.
            raise BatchInputError(f"{label} is not a valid notebook: {exc}") from None
    return dict(notebook) if not isinstance(notebook, dict) else notebook


def _looks_like_notebook(text: str) -> bool:
    """A JSON object with an ``nbformat`` key (JSON errors are left to nbformat to explain)."""
    try:
        data = json.loads(text)
    except ValueError:
        return True
    return isinstance(data, dict) and "nbformat" in data


def notebook_cells(notebook: dict[str, Any]) -> list[Cell]:
    """The cells of a v4 notebook, numbered as nbformat does."""
    cells: list[Cell] = []
    for index, cell in enumerate(notebook.get("cells", [])):
        kind = cell.get("cell_type", "raw")
        source = cell.get("source", "")
        if isinstance(source, list):  # the on-disk form; nbformat joins it, be safe
            source = "".join(source)
        tags = frozenset(cell.get("metadata", {}).get("tags", []) or [])
        cell_kind: CellKind = kind if kind in ("code", "markdown") else "raw"
        cells.append(Cell(index, cell_kind, str(source), tags=tags))
    return cells


# -- SOURCE -----------------------------------------------------------------------


def is_notebook_path(source: str) -> bool:
    return source != "-" and source.lower().endswith(".ipynb")


def load_document(source: str, *, split: bool = True) -> Document:
    """Read SOURCE (a path, or ``-`` for stdin) into a :class:`Document`.

    Raises :class:`BatchInputError` for an unreadable file or an invalid notebook.
    """
    if source == "-":
        return Document("<stdin>", split_script(_read_stdin(), split=split))
    path = Path(source)
    text = _read_file(path)
    if is_notebook_path(source):
        notebook = parse_notebook(text, str(path))
        return Document(str(path), notebook_cells(notebook), path=path, notebook=notebook)
    return Document(str(path), split_script(text, split=split), path=path)


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BatchInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BatchInputError(f"{path}: is a directory") from None
    except UnicodeDecodeError as exc:
        raise BatchInputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise BatchInputError(f"{path}: {exc.strerror or exc}") from None


def _read_stdin() -> str:
    if sys.stdin is None:  # started with fd 0 closed
        raise BatchInputError("cannot read the script from stdin: there is no stdin")
    try:
        return sys.stdin.read()
    except UnicodeDecodeError as exc:
        raise BatchInputError(f"<stdin>: not UTF-8 text ({exc.reason})") from None
    except (OSError, ValueError) as exc:  # ValueError: stdin closed
        raise BatchInputError(f"cannot read the script from stdin: {exc}") from None
