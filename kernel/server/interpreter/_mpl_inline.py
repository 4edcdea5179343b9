"""A matplotlib backend that shows figures as PNG images in the kernel's output (``inline``).

Selected by ``%matplotlib inline`` as ``module://kernel.server.interpreter._mpl_inline``.
Figures are rendered with Agg and published as ``display_data`` (``image/png`` plus a
``text/plain`` repr) through the :class:`~kernel.server.interpreter._display.Display` that
:func:`activate` set, then closed: by ``plt.show()`` (:func:`show`), and after every cell
by :func:`flush_figures`, which ``%matplotlib inline`` adds to the kernel's post-execute
callbacks. Needs matplotlib, never IPython.
"""

from __future__ import annotations

import io
import sys
from typing import TYPE_CHECKING, Any

from matplotlib._pylab_helpers import Gcf  # type: ignore[import-not-found, unused-ignore]
from matplotlib.backends.backend_agg import (  # type: ignore[import-not-found, unused-ignore]
    FigureCanvasAgg,
)

if TYPE_CHECKING:
    from ._display import Display

__all__ = ["BACKEND", "FigureCanvas", "activate", "flush_figures", "show"]

BACKEND = f"module://{__name__}"
"""The name matplotlib knows this backend by (``MPLBACKEND``, ``matplotlib.use``)."""

#: The canvas class matplotlib builds figure managers from (Agg: renders to a pixel buffer).
FigureCanvas = FigureCanvasAgg

_display: Display | None = None


def activate(display: Display) -> None:
    """Publish figures through ``display`` from now on."""
    global _display
    _display = display


def show(*, block: bool | None = None) -> None:
    """``plt.show()``: publish every open figure, then close them all. ``block`` is ignored."""
    managers = Gcf.get_all_fig_managers()
    try:
        for manager in managers:
            _publish(manager.canvas.figure)
    finally:
        if managers:
            Gcf.destroy_all()


def flush_figures() -> None:
    """After a cell: show the figures it left open (as :func:`show`). Never raises: a figure
    that fails to render is reported on stderr."""
    if _display is None or not Gcf.get_all_fig_managers():
        return
    try:
        show()
    except Exception as exc:
        print(f"Error rendering a figure: {type(exc).__name__}: {exc}", file=sys.stderr)


def _publish(figure: Any) -> None:
    if _display is None:
        return
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    _display.display({"image/png": buffer.getvalue(), "text/plain": repr(figure)}, raw=True)
