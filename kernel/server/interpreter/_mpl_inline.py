"""A matplotlib backend that shows figures in the kernel's output (``inline``), as ipykernel's.

matplotlib's default in the kernel (see ``_inline_figures``), and what ``%matplotlib inline``
selects, as ``module://kernel.server.interpreter._mpl_inline``. Figures are rendered with Agg
and published as ``display_data`` through the display ``_inline_figures.activate`` recorded:
one output per figure, with the formats of ``%config InlineBackend.figure_formats`` (PNG by
default) and a ``text/plain`` repr, as ipykernel sends them. ``plt.show()`` (:func:`show`)
publishes and closes every open figure; so does :func:`flush_figures` after every cell. A
figure that is a cell's value is shown too, as IPython does (a type formatter). A figure with
nothing drawn has only its ``text/plain``. Needs matplotlib, never IPython.
"""

from __future__ import annotations

import base64
import io
import struct
import sys
from typing import Any

from matplotlib import rcParams  # type: ignore[import-not-found, unused-ignore]
from matplotlib._pylab_helpers import Gcf  # type: ignore[import-not-found, unused-ignore]
from matplotlib.backends.backend_agg import (  # type: ignore[import-not-found, unused-ignore]
    FigureCanvasAgg,
)
from matplotlib.figure import Figure  # type: ignore[import-not-found, unused-ignore]

from ._display import register_type_formatter
from ._inline_figures import BACKEND, config, current_display

__all__ = ["BACKEND", "FigureCanvas", "figure_bundle", "flush_figures", "show"]

#: The canvas class matplotlib builds figure managers from (Agg: renders to a pixel buffer).
FigureCanvas = FigureCanvasAgg

#: Format -> (MIME type, ``savefig`` format, whether the payload is text).
_FORMATS = {
    "png": ("image/png", "png", False),
    "retina": ("image/png", "png", False),
    "jpeg": ("image/jpeg", "jpeg", False),
    "svg": ("image/svg+xml", "svg", True),
    "pdf": ("application/pdf", "pdf", False),
}


def show(*, block: bool | None = None) -> None:
    """``plt.show()``: publish every open figure, then close them all. ``block`` is ignored."""
    managers = Gcf.get_all_fig_managers()
    try:
        display = current_display()
        for manager in managers:
            figure = manager.canvas.figure
            if display is not None:
                data, metadata = figure_bundle(figure)
                display.display(data, metadata=metadata, raw=True)
    finally:
        if managers and config.close_figures:
            Gcf.destroy_all()


def flush_figures() -> None:
    """After a cell: show the figures it left open (as :func:`show`). Never raises: a figure
    that fails to render is reported on stderr."""
    if current_display() is None or not Gcf.get_all_fig_managers():
        return
    # After ``%matplotlib notebook`` or ``widget`` (or ``plt.switch_backend``) the open
    # figures are that backend's to show: as ipykernel's, only the inline backend's flush.
    backend = dict.__getitem__(rcParams, "backend")  # the raw value: never resolves one
    if isinstance(backend, str) and backend != BACKEND:
        return
    try:
        show()
    except Exception as exc:
        print(f"Error rendering a figure: {type(exc).__name__}: {exc}", file=sys.stderr)


def figure_bundle(figure: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data, metadata)`` of ``figure`` in the configured formats, binary ones base64."""
    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    if figure.axes or figure.lines:  # as IPython: an empty figure is not rendered
        for name in sorted(config.figure_formats, key=list(_FORMATS).index):
            mime, fmt, is_text = _FORMATS[name]
            if mime in data:
                continue
            payload = _render(figure, fmt, 2.0 if name == "retina" else 1.0)
            if name == "retina":
                width, height = struct.unpack(">II", payload[16:24])  # the PNG header
                metadata[mime] = {"width": width // 2, "height": height // 2}
            data[mime] = payload.decode("utf-8") if is_text else base64.b64encode(payload).decode()
    data["text/plain"] = repr(figure)
    return data, metadata


def _render(figure: Any, fmt: str, scale: float) -> bytes:
    buffer = io.BytesIO()
    options = dict(config.print_figure_kwargs)
    dpi = options.pop("dpi", None) or figure.dpi
    figure.canvas.print_figure(buffer, format=fmt, dpi=dpi * scale, **options)
    return buffer.getvalue()


def _as_value(figure: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    data, metadata = figure_bundle(figure)
    del data["text/plain"]  # the formatter's own repr is the pretty printer's
    return data, metadata


register_type_formatter(Figure, _as_value)
