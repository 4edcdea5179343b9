"""``get_ipython().display_formatter.formatters``: IPython's per-MIME formatters, honoured.

Notebooks teach custom display logic through IPython's formatters:
``get_ipython().display_formatter.formatters["text/latex"].for_type(Poly, to_latex)``.
Loom formats objects itself (``_display.format_object``), so it hands out IPython's own
``DisplayFormatter`` (built the first time a user asks for ``formatters``: IPython is
imported then, never at start-up) and, from then on, asks it for every object Loom formats.

Only what the *user* registered counts: a snapshot of each formatter's printers taken when
it was built tells them apart from IPython's defaults (Loom's pretty printer already writes
``text/plain`` as IPython's defaults would). Precedence is IPython's: ``_repr_mimebundle_``,
then a registered printer, then the ``_repr_*_`` methods (``format_object`` calls the
registered type formatters in that place).
"""

from __future__ import annotations

from typing import Any

from ._display import MimeBundle, register_type_formatter

__all__ = ["ipython_formatters"]


class _Bridge:
    """IPython's ``DisplayFormatter`` and the printers it had before the user added any."""

    def __init__(self) -> None:
        from IPython.core.formatters import DisplayFormatter

        self.display_formatter = DisplayFormatter()
        self._defaults = {
            mime: {id(printer) for printer in _printers(formatter)}
            for mime, formatter in self.display_formatter.formatters.items()
        }

    def formatted(self, obj: object) -> tuple[MimeBundle, dict[str, Any]] | None:
        """The MIME types user-registered printers give ``obj``; ``None`` if none applies."""
        data: MimeBundle = {}
        for mime, formatter in self.display_formatter.formatters.items():
            if not formatter.enabled:
                continue
            try:
                printer = formatter.lookup(obj)
            except Exception:  # KeyError: no printer; anything else: a broken registration
                continue
            if id(printer) in self._defaults.get(mime, ()):
                continue
            value = formatter(obj)  # IPython's call: reports a printer's error, returns None
            if value is not None:
                data[mime] = value
        return (data, {}) if data else None


def _printers(formatter: Any) -> list[object]:
    return [
        *formatter.type_printers.values(),
        *formatter.deferred_printers.values(),
        *formatter.singleton_printers.values(),
    ]


_bridge: _Bridge | None = None


def ipython_formatters() -> dict[str, Any]:
    """IPython's formatters by MIME type; raises ``AttributeError`` without IPython."""
    global _bridge
    if _bridge is None:
        try:
            bridge = _Bridge()
        except ImportError as exc:
            raise AttributeError(
                "display_formatter.formatters needs IPython in the kernel's environment "
                f"(pip install ipython): {exc}"
            ) from None
        register_type_formatter(object, bridge.formatted)
        _bridge = bridge
    formatters: dict[str, Any] = _bridge.display_formatter.formatters
    return formatters
