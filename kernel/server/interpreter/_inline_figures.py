"""Inline figures by default, as in ipykernel, without importing matplotlib before user code.

ipykernel sets ``MPLBACKEND`` to its inline backend; Loom does the same *inside* the kernel
process only: when user code imports matplotlib, and ``MPLBACKEND`` is not set, matplotlib's
``backend`` setting becomes :data:`BACKEND` (``_import_hooks``). Child processes are not
told to use a backend that only means something inside the kernel.

The backend itself (``_mpl_inline``, which imports matplotlib) publishes through the display
:func:`activate` recorded, renders the formats in :data:`config` (``%config
InlineBackend.figure_formats``), and after every cell :func:`flush_figures` shows and closes the
figures the cell left open, if matplotlib is in use.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._import_hooks import after_import

if TYPE_CHECKING:
    from ._display import Display

__all__ = ["BACKEND", "FIGURE_FORMATS", "InlineConfig", "activate", "config", "current_display"]
__all__ += ["enable_by_default", "flush_figures", "set_figure_format", "set_figure_formats"]

_BACKEND_MODULE = f"{__package__}._mpl_inline"
BACKEND = f"module://{_BACKEND_MODULE}"
"""The name matplotlib knows the inline backend by (``MPLBACKEND``, ``matplotlib.use``)."""

FIGURE_FORMATS = ("png", "retina", "jpeg", "svg", "pdf")
"""What ``figure_formats`` may hold (``png2x`` means ``retina``, ``jpg`` means ``jpeg``)."""
_ALIASES = {"png2x": "retina", "jpg": "jpeg"}


class InlineConfig:
    """The settings of IPython's ``InlineBackend`` that Loom's inline backend honours."""

    # A plain class: a dataclass costs a millisecond to define, on every kernel's start.
    def __init__(self) -> None:
        self.figure_formats: set[str] = {"png"}
        # IPython's older single-format setting: setting it sets figure_formats; reading it
        # gives what was last set ('' at first), as IPython's does.
        self.figure_format = ""
        self.print_figure_kwargs: dict[str, Any] = {"bbox_inches": "tight"}
        self.close_figures = True


config = InlineConfig()
_display: Display | None = None


def activate(display: Display) -> None:
    """Publish figures through ``display`` from now on."""
    global _display
    _display = display


def current_display() -> Display | None:
    """The display figures are published through, or ``None`` before :func:`activate`."""
    return _display


def enable_by_default(display: Display) -> None:
    """Make the inline backend matplotlib's default in this process, publishing on
    ``display``. Imports nothing; ``MPLBACKEND`` set by the user wins."""
    activate(display)
    after_import("matplotlib", _default_backend)


def _default_backend(matplotlib: ModuleType) -> None:
    if not os.environ.get("MPLBACKEND"):
        matplotlib.rcParams["backend"] = BACKEND


def flush_figures() -> None:
    """After a cell: show and close the figures it left open, if the inline backend is in
    use. Never raises (a figure that fails to render is reported on stderr)."""
    backend = sys.modules.get(_BACKEND_MODULE)
    if backend is not None:
        backend.flush_figures()


def set_figure_formats(formats: object) -> None:
    """Set ``config.figure_formats`` from a string or a collection of strings.

    Raises ``ValueError`` for a format not in :data:`FIGURE_FORMATS`.
    """
    items = [formats] if isinstance(formats, str) else list(formats)  # type: ignore[call-overload]
    chosen = {_ALIASES.get(str(item).lower(), str(item).lower()) for item in items}
    unknown = chosen - set(FIGURE_FORMATS)
    if unknown:
        raise ValueError(f"unknown figure formats {sorted(unknown)}; choose from {FIGURE_FORMATS}")
    config.figure_formats = chosen


def set_figure_format(value: object) -> None:
    """Set ``InlineBackend.figure_format``: one format, which becomes ``figure_formats``."""
    set_figure_formats(value)
    config.figure_format = str(value)
