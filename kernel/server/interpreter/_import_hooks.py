"""Run a function right after user code imports a given module, without importing it first.

The kernel adapts two libraries the moment user code imports them, and not before (importing
them at start-up would cost a third of a second): IPython's shell module (``get_ipython()``
must answer, see ``_ipython_shell``) and matplotlib (its default backend becomes the inline
one, see ``_inline_figures``). One finder at the front of ``sys.meta_path`` watches for the
modules named in :func:`after_import`; for every other import it returns ``None`` at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

__all__ = ["after_import", "remove_hooks"]

Hook = Callable[[ModuleType], None]

_hooks: dict[str, Hook] = {}


def after_import(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` once module ``name`` has been executed by an import (again on a
    reload), or now if it already is in ``sys.modules``. One hook per name: a second call
    replaces the first.

    The hook runs inside the importing statement; an exception from it is reported on
    stderr and the import still succeeds.
    """
    _hooks[name] = hook
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    module = sys.modules.get(name)
    if module is not None:
        _run(name, module)


def remove_hooks() -> None:
    """Forget every hook and take the finder off ``sys.meta_path`` (for tests)."""
    _hooks.clear()
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]


def _run(name: str, module: ModuleType) -> None:
    hook = _hooks.get(name)
    if hook is None:
        return
    try:
        hook(module)
    except Exception as exc:
        print(f"Loom: adapting {name} to the kernel failed: {exc!r}", file=sys.stderr)


class _Finder:
    """Finds nothing itself: wraps the loader the other finders find for a watched module."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> ModuleSpec | None:
        if fullname not in _hooks:
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec: ModuleSpec | None = find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _HookedLoader(spec.loader)  # type: ignore[assignment]
                return spec
        return None


class _HookedLoader:
    """The real loader, plus the hook after ``exec_module``; anything else is delegated."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _run(module.__name__, module)
