"""Settings: ``%xmode`` (how errors are shown) and ``%config`` (the few IPython settings
Loom's kernel has).

``%config`` is honest: it lists and sets only what Loom implements, IPython's
``InlineBackend`` (figure formats, ``savefig`` options, closing figures after a cell) and
the exception mode, under the class names IPython users type. Anything else is a
``UsageError`` saying it is not supported, rather than a setting silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kernel.server.interpreter import _inline_figures
from kernel.server.interpreter._traceback import MODES

from ._args import UsageError

if TYPE_CHECKING:
    from ._registry import Magics

__all__ = ["load_config_magics"]

_SHELLS = ("InteractiveShell", "ZMQInteractiveShell", "TerminalInteractiveShell")
_INLINE_SETTINGS = ("figure_formats", "figure_format", "print_figure_kwargs", "close_figures")


def load_config_magics(magics: Magics) -> None:
    """Register ``%xmode`` and ``%config`` on ``magics``."""
    config = _ConfigMagics(magics)
    magics.register_line("xmode", config.xmode)
    magics.register_line("config", config.config)


class _ConfigMagics:
    def __init__(self, magics: Magics) -> None:
        self._magics = magics

    def xmode(self, line: str) -> None:
        """Choose how errors are reported.

        Usage: ``%xmode [Plain|Context|Verbose|Minimal|Docs]``; without a mode, the next one
        in that list. ``Context`` (the default) shows each frame with source lines around
        the failing one; ``Verbose`` adds function arguments and whole functions; ``Plain``
        is Python's own layout; ``Minimal`` only the last line. ``Docs`` is ``Context``.
        """
        interp = self._magics.interpreter
        name = line.strip().capitalize()
        if not name:
            name = MODES[(MODES.index(interp.xmode) + 1) % len(MODES)]
        if name not in MODES:
            raise UsageError(f"Unrecognized exception mode {line.strip()!r}; use one of {MODES}")
        interp.xmode = name
        print(f"Exception reporting mode: {name}")

    def config(self, line: str) -> Any:
        """Show or set the kernel's IPython-style settings.

        Usage:
          %config                         list what can be configured
          %config InlineBackend           show its settings
          %config InlineBackend.figure_formats   the value of one (the cell's value)
          %config InlineBackend.figure_formats = ['svg']   set one (the value is Python)

        Settings: ``InlineBackend.figure_formats`` (png, retina, jpeg, svg, pdf),
        ``InlineBackend.figure_format`` (one of those), ``InlineBackend.print_figure_kwargs``
        (``savefig`` options), ``InlineBackend.close_figures``, and ``InteractiveShell.xmode``.
        Other IPython settings do not exist in Loom's kernel and are refused.
        """
        line = line.strip()
        if not line:
            print("Available objects for config:\n    InlineBackend\n    InteractiveShell")
            return
        target, equals, value = line.partition("=")
        target = target.strip()
        owner, dot, name = target.partition(".")
        if not equals:
            if dot:
                return self._value(owner, name)
            self._show(target)
            return None
        setter = self._setters(owner).get(name)
        if setter is None:
            raise UsageError(f"%config {target}: {_unsupported(owner, name)}")
        site = self._magics.call_site
        setter(eval(value.strip(), site.globals, site.locals))
        return None

    def _value(self, owner: str, name: str) -> Any:
        """One setting's current value, as IPython's ``%config Class.trait`` returns it."""
        if owner == "InlineBackend" and name in _INLINE_SETTINGS:
            return getattr(_inline_figures.config, name)
        if owner in _SHELLS and name == "xmode":
            return self._magics.interpreter.xmode
        raise UsageError(f"%config {owner}.{name}: {_unsupported(owner, name)}")

    def _setters(self, owner: str) -> dict[str, Callable[[Any], None]]:
        if owner == "InlineBackend":
            return {
                "figure_formats": _inline_figures.set_figure_formats,
                "figure_format": _inline_figures.set_figure_format,
                "print_figure_kwargs": _set_print_figure_kwargs,
                "close_figures": _set_close_figures,
            }
        if owner in _SHELLS:
            return {"xmode": lambda value: self.xmode(str(value))}
        return {}

    def _show(self, owner: str) -> None:
        if owner == "InlineBackend":
            settings = _inline_figures.config
            print(
                "InlineBackend options\n---------------------\n"
                f"InlineBackend.close_figures=<Bool>\n    Current: {settings.close_figures}\n"
                f"InlineBackend.figure_formats=<Set>\n    Current: {settings.figure_formats}\n"
                "InlineBackend.print_figure_kwargs=<Dict>\n"
                f"    Current: {settings.print_figure_kwargs}"
            )
        elif owner in _SHELLS:
            print(
                f"{owner} options\n{'-' * (len(owner) + 8)}\n{owner}.xmode=<Enum>\n"
                f"    Current: {self._magics.interpreter.xmode!r}"
            )
        else:
            raise UsageError(f"%config {owner}: {_unsupported(owner, '')}")


def _set_print_figure_kwargs(value: Any) -> None:
    if not isinstance(value, dict):
        raise UsageError("InlineBackend.print_figure_kwargs must be a dict")
    _inline_figures.config.print_figure_kwargs = dict(value)


def _set_close_figures(value: Any) -> None:
    _inline_figures.config.close_figures = bool(value)


def _unsupported(owner: str, name: str) -> str:
    what = f"{owner}.{name}" if name else owner
    return (
        f"{what} is not a setting of Loom's kernel (it has InlineBackend.figure_formats, "
        "figure_format, print_figure_kwargs, close_figures and InteractiveShell.xmode)"
    )
