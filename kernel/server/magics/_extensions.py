"""Extensions: ``%load_ext``, ``%unload_ext`` and ``%reload_ext``.

An extension is an importable module with a ``load_loom_extension(magics)`` function; it
registers its magics on the :class:`~._registry.Magics` it is given (``register_line``,
``register_cell``, with ``is_async=True`` for magics that await, such as the parallel
layer's ``%px``). ``unload_loom_extension(magics)``, if the module has one, undoes that.
This is how other packages add to Loom's kernel without ``kernel`` importing them.

IPython's own extensions (``load_ipython_extension(ipython)``) expect an IPython
``InteractiveShell``, which Loom's kernel is not: loading one says so instead of failing
inside it. The IPython extensions users load every day have Loom implementations under
the same names (:data:`BUILTIN_EXTENSIONS`): ``%load_ext autoreload`` loads Loom's
``autoreload``, as IPython prefers its bundled extensions to importable modules.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING

from ._args import UsageError

if TYPE_CHECKING:
    from ._registry import Magics

__all__ = ["BUILTIN_EXTENSIONS", "load_extension", "load_extension_magics"]

LOAD = "load_loom_extension"
UNLOAD = "unload_loom_extension"

BUILTIN_EXTENSIONS = {"autoreload": f"{__package__}._autoreload"}
"""Extension name -> the module that implements it in Loom (IPython's bundled extensions)."""


def load_extension_magics(magics: Magics) -> None:
    """Register ``%load_ext``, ``%unload_ext`` and ``%reload_ext`` on ``magics``."""
    extensions = _Extensions(magics)
    magics.register_line("load_ext", extensions.load_ext)
    magics.register_line("unload_ext", extensions.unload_ext)
    magics.register_line("reload_ext", extensions.reload_ext)


def load_extension(magics: Magics, module_name: str) -> bool:
    """Import ``module_name`` and call its ``load_loom_extension(magics)``.

    Returns False if it was already loaded on ``magics`` (nothing is done then).
    Raises :class:`UsageError` if the module cannot be imported or is not a Loom
    extension; whatever the extension's own function raises propagates.
    """
    return _Extensions(magics).load(module_name)


class _Extensions:
    """Loading and unloading extensions on one :class:`Magics`."""

    def __init__(self, magics: Magics) -> None:
        self._magics = magics
        self.loaded = magics.loaded_extensions

    def load(self, name: str) -> bool:
        if name in self.loaded:
            return False
        module = _import(name)
        load = getattr(module, LOAD, None)
        if not callable(load):
            raise UsageError(_not_an_extension(name, module))
        load(self._magics)
        self.loaded.add(name)
        return True

    def unload(self, name: str) -> None:
        if name not in self.loaded:
            raise UsageError(f"The {name} extension is not loaded.")
        unload = getattr(sys.modules.get(BUILTIN_EXTENSIONS.get(name, name)), UNLOAD, None)
        if callable(unload):
            unload(self._magics)
        self.loaded.discard(name)

    # -- the magics ---------------------------------------------------------------------

    def load_ext(self, args: str) -> None:
        """Load an extension: a module with a ``load_loom_extension(magics)`` function.

        Usage: ``%load_ext module_name``
        """
        if not self.load(_one_name(args, "load_ext")):
            name = args.strip()
            print(f"The {name} extension is already loaded. To reload it, use:")
            print(f"  %reload_ext {name}")

    def unload_ext(self, args: str) -> None:
        """Unload an extension (calls its ``unload_loom_extension(magics)`` if it has one).

        Usage: ``%unload_ext module_name``
        """
        self.unload(_one_name(args, "unload_ext"))

    def reload_ext(self, args: str) -> None:
        """Reload an extension: unload it, re-import its module, load it again.

        Usage: ``%reload_ext module_name``
        """
        name = _one_name(args, "reload_ext")
        if name in self.loaded:
            self.unload(name)
        module = BUILTIN_EXTENSIONS.get(name, name)
        if module in sys.modules:  # as IPython: re-import whatever was imported before
            importlib.reload(sys.modules[module])
        self.load(name)


def _one_name(args: str, magic: str) -> str:
    name = args.strip()
    if not name or " " in name:
        raise UsageError(f"%{magic} takes one module name, e.g. %{magic} parallel")
    return name


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(BUILTIN_EXTENSIONS.get(name, name))
    except ImportError as exc:
        raise UsageError(f"No module named {name!r}: cannot load it as an extension.") from exc


def _not_an_extension(name: str, module: ModuleType) -> str:
    if callable(getattr(module, "load_ipython_extension", None)):
        return (
            f"{name} is an IPython extension (it defines load_ipython_extension); Loom's "
            f"kernel loads extensions that define {LOAD}(magics)."
        )
    return f"{name} is not a Loom extension: it has no {LOAD}(magics) function."
