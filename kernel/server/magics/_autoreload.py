"""``%load_ext autoreload``: reload edited modules before every cell, as IPython's extension.

Loom's own implementation of IPython's ``autoreload`` (``%load_ext autoreload`` finds it
first: see ``_extensions``). Before each cell, modules whose source file changed since it
was last seen are reloaded, and the functions and classes the old module defined are
updated in place (a function gets the new code, a class the new methods, and instances of
the class the new class), so ``from mod import f`` and existing objects see the edit:

- ``%autoreload 2`` (or ``all``): every module, except those ``%aimport -mod`` excludes;
- ``%autoreload 1`` (or ``explicit``): only modules named by ``%aimport mod``;
- ``%autoreload 0`` (or ``off``): none; ``%autoreload`` (or ``now``) reloads once, now;
- ``%autoreload 3`` (or ``complete``) is ``2`` here (a reloaded module has its new names).

A module that fails to reload (a syntax error while editing) is reported on stderr and
keeps its old code; the cell still runs. Modules are compared by modification time, and a
module is first seen when a cell imports it, so importing is never a reload.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
import traceback
import types
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._args import UsageError, split_options

if TYPE_CHECKING:
    from ._registry import Magics

__all__ = ["ModuleReloader", "load_loom_extension", "unload_loom_extension"]

_MODES = {"0": 0, "off": 0, "1": 1, "explicit": 1, "2": 2, "all": 2, "3": 3, "complete": 3}
#: Function attributes that carry what a ``def`` says.
_FUNCTION_ATTRIBUTES = ("__code__", "__defaults__", "__doc__", "__dict__", "__kwdefaults__")

_reloaders: dict[int, ModuleReloader] = {}


def load_loom_extension(magics: Magics) -> None:
    """Register ``%autoreload`` and ``%aimport``; check modules before and after each cell."""
    reloader = ModuleReloader()
    _reloaders[id(magics)] = reloader
    magics.register_line("autoreload", reloader.autoreload_magic)
    magics.register_line("aimport", lambda line: reloader.aimport_magic(line, magics))
    magics.pre_execute.append(reloader.pre_execute)
    magics.post_execute.append(reloader.post_execute)


def unload_loom_extension(magics: Magics) -> None:
    """Undo :func:`load_loom_extension`: no more reloading, the magics are gone."""
    reloader = _reloaders.pop(id(magics), None)
    if reloader is None:
        return
    magics.line.pop("autoreload", None)
    magics.line.pop("aimport", None)
    for hooks, hook in (
        (magics.pre_execute, reloader.pre_execute),
        (magics.post_execute, reloader.post_execute),
    ):
        if hook in hooks:
            hooks.remove(hook)


class ModuleReloader:
    """Which modules to reload, when they were last seen, and the reloading itself."""

    def __init__(self) -> None:
        self.mode = 0
        self.verbose = False
        self.hide_errors = False
        #: ``%aimport mod`` / ``%aimport -mod``.
        self.explicit: set[str] = set()
        self.skipped: set[str] = set()
        #: Module name -> modification time of its source when last loaded or seen.
        self.mtimes: dict[str, float] = {}
        self._old_objects: dict[tuple[str, str], list[weakref.ref[Any]]] = {}
        self._known = set(sys.modules)
        self.post_execute()

    # -- the hooks -------------------------------------------------------------------------

    def pre_execute(self) -> None:
        """Before a cell: reload what changed, if the mode says so."""
        if self.mode:
            self.check(everything=self.mode >= 2)

    def post_execute(self) -> None:
        """After a cell: note the modules it imported, as they are now."""
        loaded = set(sys.modules)
        for name in loaded - self._known:
            mtime = _source_mtime(sys.modules.get(name))
            if mtime is not None:
                self.mtimes[name] = mtime
        self._known = loaded

    def check(self, *, everything: bool) -> None:
        """Reload every changed module (``everything``) or every changed ``%aimport`` one."""
        for name, module in list(sys.modules.items()):
            if name in self.skipped or not (everything or name in self.explicit):
                continue
            mtime = _source_mtime(module)
            if mtime is None:
                continue
            seen = self.mtimes.setdefault(name, mtime)
            if mtime <= seen:
                continue
            self.mtimes[name] = mtime
            self._reload(name, module)

    def _reload(self, name: str, module: types.ModuleType) -> None:
        if self.verbose:
            print(f"Reloading '{name}'.")
        try:
            superreload(module, self._old_objects)
        except Exception:
            if not self.hide_errors:
                text = "".join(traceback.format_exc(limit=-1))
                print(f"[autoreload of {name} failed: {text}]", file=sys.stderr)

    # -- the magics --------------------------------------------------------------------------

    def autoreload_magic(self, line: str) -> None:
        """Reload edited modules before every cell.

        Usage: ``%autoreload [-p] [-l] [--hide-errors] [MODE]``. MODE: ``0``/``off`` (never),
        ``1``/``explicit`` (only ``%aimport`` modules), ``2``/``all`` (every module but
        ``%aimport -mod`` ones), ``3``/``complete`` (as ``2``); no MODE or ``now``: reload
        what changed now. ``-p``/``-l`` print the reloaded modules; ``--hide-errors`` does
        not report failed reloads.
        """
        options, mode = split_options(line, "pl", ("hide-errors", "print", "log"))
        self.verbose = any(options.get(key) for key in ("p", "l", "print", "log"))
        self.hide_errors = bool(options.get("hide-errors"))
        if mode in ("", "now"):
            self.check(everything=True)
        elif mode in _MODES:
            self.mode = _MODES[mode]
        else:
            raise UsageError(f"%autoreload: unknown mode {mode!r} (0, 1, 2, 3, off, all, now)")

    def aimport_magic(self, line: str, magics: Magics) -> None:
        """Choose the modules ``%autoreload 1`` reloads (and ``2`` skips).

        Usage: ``%aimport`` lists them; ``%aimport mod[, mod2]`` imports and marks them for
        reloading; ``%aimport -mod`` marks a module never to be reloaded.
        """
        names = [name.strip() for name in line.replace(",", " ").split()]
        if not names:
            reloaded = "all-except-skipped" if self.mode >= 2 else " ".join(sorted(self.explicit))
            skipped = " ".join(sorted(self.skipped))
            print(f"Modules to reload:\n{reloaded}\n\nModules to skip:\n{skipped}")
            return
        for name in names:
            if name.startswith("-"):
                self.skipped.add(name[1:])
                self.explicit.discard(name[1:])
                continue
            self.skipped.discard(name)
            self.explicit.add(name)
            module = importlib.import_module(name)
            top = name.split(".")[0]
            magics.call_site.globals[top] = sys.modules[top] if "." in name else module
            self.mtimes.setdefault(name, _source_mtime(module) or 0.0)


def _source_mtime(module: types.ModuleType | None) -> float | None:
    """The modification time of ``module``'s Python source, or None (built-in, no file)."""
    filename = getattr(module, "__file__", None)
    if not isinstance(filename, str) or not filename.endswith((".py", ".pyc")):
        return None
    source = filename[:-1] if filename.endswith(".pyc") else filename
    try:
        return os.stat(source).st_mtime
    except OSError:
        return None


# -- reloading in place ---------------------------------------------------------------------


def superreload(
    module: types.ModuleType, old_objects: dict[tuple[str, str], list[weakref.ref[Any]]]
) -> types.ModuleType:
    """Reload ``module`` and update the functions and classes it defined before in place.

    ``old_objects`` remembers (weakly) the objects of earlier versions, so objects from
    several versions back are updated too. If the reload raises, the module keeps its old
    namespace and the exception propagates.
    """
    name = module.__name__
    for attr, obj in list(module.__dict__.items()):
        if getattr(obj, "__module__", None) == name:
            with contextlib.suppress(TypeError):  # not weakly referenceable
                old_objects.setdefault((name, attr), []).append(weakref.ref(obj))
    old_dict = module.__dict__.copy()
    module.__dict__.clear()  # as IPython: names deleted from the source disappear
    module.__dict__.update(__name__=name, __loader__=old_dict.get("__loader__"))
    module.__dict__.update(__spec__=old_dict.get("__spec__"))
    try:
        module = importlib.reload(module)
    except BaseException:
        module.__dict__.update(old_dict)
        raise
    for attr, new in list(module.__dict__.items()):
        refs = [ref for ref in old_objects.get((name, attr), []) if ref() is not None]
        for ref in refs:
            _update(ref(), new)
        if refs:
            old_objects[(name, attr)] = refs
        else:
            old_objects.pop((name, attr), None)
    return module


def _update(old: Any, new: Any) -> bool:
    """Make ``old`` behave as ``new`` where it can; whether it could."""
    if old is new:
        return True
    for kind, update in _UPDATERS:
        if isinstance(old, kind) and isinstance(new, kind):
            update(old, new)
            return True
    return False


def _update_function(old: types.FunctionType, new: types.FunctionType) -> None:
    for attr in _FUNCTION_ATTRIBUTES:
        # ValueError: a __code__ with other free variables than the old function's.
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            setattr(old, attr, getattr(new, attr))


def _update_property(old: property, new: property) -> None:
    for accessor in ("fget", "fset", "fdel"):
        old_fn, new_fn = getattr(old, accessor), getattr(new, accessor)
        if old_fn is not None and new_fn is not None:
            _update(old_fn, new_fn)


def _update_class(old: type, new: type) -> None:
    for key in list(old.__dict__):
        if key in ("__dict__", "__weakref__", "__doc__"):
            continue
        if key not in new.__dict__:
            with contextlib.suppress(AttributeError, TypeError):
                delattr(old, key)
            continue
        old_obj, new_obj = old.__dict__[key], new.__dict__[key]
        if not _update(old_obj, new_obj):
            with contextlib.suppress(AttributeError, TypeError):
                setattr(old, key, new_obj)
    for key in new.__dict__.keys() - old.__dict__.keys():
        with contextlib.suppress(AttributeError, TypeError):
            setattr(old, key, new.__dict__[key])
    _update_instances(old, new)


def _update_instances(old: type, new: type) -> None:
    """Instances of the old class become instances of the new one."""
    for referrer in gc.get_referrers(old):
        if type(referrer) is old:
            with contextlib.suppress(TypeError):
                referrer.__class__ = new


def _update_method(old: Any, new: Any) -> None:
    _update(old.__func__, new.__func__)


_UPDATERS: tuple[tuple[type, Callable[[Any, Any], None]], ...] = (
    (type, _update_class),
    (types.FunctionType, _update_function),
    (property, _update_property),
    (classmethod, _update_method),
    (staticmethod, _update_method),
)
