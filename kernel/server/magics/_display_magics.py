"""Cells shown as rich output: ``%%html``, ``%%markdown``, ``%%latex``, ``%%svg``,
``%%javascript`` (``%%js``).

Each displays the cell's text as IPython's display object of that kind. When IPython is
importable those are IPython's own classes (``IPython.display.HTML``...), so the output is
exactly ipykernel's (its ``text/plain`` names the class; ``SVG`` keeps only the ``<svg>``
element); otherwise Loom's classes of the same names, whose output differs only in that
``text/plain``. Either way IPython is imported only when such a magic first runs.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._args import UsageError, split_options

if TYPE_CHECKING:
    from ._registry import Magics

__all__ = ["load_display_magics"]

#: Magic name -> the display class it uses.
_KINDS = {
    "html": "HTML",
    "HTML": "HTML",
    "markdown": "Markdown",
    "latex": "Latex",
    "svg": "SVG",
    "SVG": "SVG",
    "javascript": "Javascript",
    "js": "Javascript",
}


def load_display_magics(magics: Magics) -> None:
    """Register ``%%html`` (``%%HTML``), ``%%markdown``, ``%%latex``, ``%%svg`` (``%%SVG``),
    ``%%javascript`` and ``%%js``."""
    for name, kind in _KINDS.items():
        magics.register_cell(name, _DisplayMagic(magics, name, kind))


@functools.cache
def _display_module() -> ModuleType:
    try:
        return importlib.import_module("IPython.core.display")
    except ImportError:
        return importlib.import_module("kernel.server.interpreter._display_objects")


class _DisplayMagic:
    """One display cell magic; its docstring is its help (``%%html?``)."""

    def __init__(self, magics: Magics, name: str, kind: str) -> None:
        self._magics = magics
        self._name = name
        self._kind = kind
        isolated = " [--isolated]" if kind == "HTML" else ""
        self.__doc__ = (
            f"Display the cell as {kind} ({_mime(kind)}).\n\nUsage: ``%%{name}{isolated}``"
            + ("; ``--isolated`` shows the HTML in an iframe." if isolated else "")
        )

    def __call__(self, line: str, body: str) -> None:
        options, rest = split_options(line, "", ("isolated",) if self._kind == "HTML" else ())
        if rest:
            raise UsageError(f"%%{self._name} takes no arguments, not {rest!r}")
        obj = getattr(_display_module(), self._kind)(body)
        metadata: dict[str, Any] | None = None
        if options.get("isolated"):
            metadata = {"text/html": {"isolated": True}}
        self._magics.interpreter.display.display(obj, metadata=metadata)


def _mime(kind: str) -> str:
    return {
        "HTML": "text/html",
        "Markdown": "text/markdown",
        "Latex": "text/latex",
        "SVG": "image/svg+xml",
        "Javascript": "application/javascript",
    }[kind]
