"""The working directory on ``sys.path`` for user code, without letting it shadow Loom.

Every process Loom launches runs ``python -P``: the user's working directory is *not*
put first on ``sys.path``, so a ``kernel.py``, ``shell.py``, ``parallel.py`` or
``zmq.py`` there cannot replace the modules the process itself is made of. User code
still expects ``import mymodule`` to find ``mymodule.py`` in the working directory, as
in IPython and ipykernel, so a serving kernel adds ``''`` (the current directory,
following ``%cd``) where IPython does: before the first ``site-packages``, so the
standard library is never shadowed by the user's files (IPython's rule since 7.2).

Loom's own import names (:data:`LOOM_PACKAGES`) keep meaning Loom afterwards, even
for a package first imported later (``%load_ext parallel`` in a kernel started in a
directory holding ``parallel.py``): their locations are found once, before ``''`` is
added, and a finder first on ``sys.meta_path`` answers for those names only.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["LOOM_PACKAGES", "user_import_path"]

#: The top-level import names Loom's distribution provides (``docs/kernel.md`` lists them).
LOOM_PACKAGES = ("kernel", "shell", "parallel")


class _LoomFinder:
    """Finds Loom's top-level packages where they were before ``''`` joined ``sys.path``.

    A meta path finder by protocol (``find_spec``), not by subclassing
    ``importlib.abc.MetaPathFinder``: importing that module costs the kernel ~18 ms.
    """

    def __init__(self, origins: dict[str, tuple[str, list[str]]]) -> None:
        self._origins = origins

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        found = self._origins.get(fullname)
        if found is None:
            return None  # submodules are found through their package's __path__
        origin, locations = found
        return importlib.util.spec_from_file_location(
            fullname, origin, submodule_search_locations=locations
        )


def _locate(names: Sequence[str]) -> dict[str, tuple[str, list[str]]]:
    """Where each of ``names`` is found now (a package's ``__init__`` and search path)."""
    origins: dict[str, tuple[str, list[str]]] = {}
    for name in names:
        module = sys.modules.get(name)
        spec = module.__spec__ if module is not None else importlib.util.find_spec(name)
        if spec is None or spec.origin is None or spec.submodule_search_locations is None:
            continue
        origins[name] = (spec.origin, list(spec.submodule_search_locations))
    return origins


def _insertion_index(path: list[str]) -> int:
    """IPython's place for ``''``: before the first ``site-packages``/``dist-packages``."""
    for index, entry in enumerate(path):
        if Path(entry).name in {"site-packages", "dist-packages"}:
            return index
    return 0


@contextlib.contextmanager
def user_import_path() -> Iterator[None]:
    """While serving: ``''`` on ``sys.path`` for user code, Loom's names pinned (module doc).

    Both are undone on exit (what user code added to ``sys.path`` meanwhile stays).
    """
    finder = _LoomFinder(_locate(LOOM_PACKAGES))
    sys.meta_path.insert(0, finder)
    added = "" not in sys.path
    if added:
        sys.path.insert(_insertion_index(sys.path), "")
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove("")
