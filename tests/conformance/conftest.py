"""Shared set-up for the conformance tests: Jupyter's own tools drive Loom's kernel.

Every test here talks to a real peer (jupyter_client, jupyter_kernel_test, nbclient,
jupyter console) that finds the kernel the way any Jupyter tool does: through a
kernelspec named ``loom``. The session fixture installs that kernelspec into a
temporary prefix and points every Jupyter and IPython directory at temporary
places, so nothing is read from or written to the real user's directories.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import kernel
from kernel.client._install import LOOM_KERNEL_NAME, install_kernelspec

#: The directory that holds the ``kernel`` package, so kernel processes import this checkout.
REPO_ROOT = Path(kernel.__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def loom_kernelspec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Install the ``loom`` kernelspec into a temporary prefix for the whole session.

    Returns the kernelspec directory. The environment (``JUPYTER_PATH`` and the other
    Jupyter/IPython directories, ``LOOM_HISTORY_FILE``, ``XDG_CACHE_HOME``, ``PYTHONPATH``)
    is patched until the session ends and then restored.
    """
    root = tmp_path_factory.mktemp("conformance")
    prefix = root / "prefix"
    spec_dir = install_kernelspec(prefix=str(prefix))
    assert spec_dir.name == LOOM_KERNEL_NAME
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        mp.setenv("JUPYTER_RUNTIME_DIR", str(root / "runtime"))
        mp.setenv("JUPYTER_DATA_DIR", str(root / "data"))
        mp.setenv("JUPYTER_CONFIG_DIR", str(root / "config"))
        mp.setenv("IPYTHONDIR", str(root / "ipython"))
        mp.setenv("LOOM_HISTORY_FILE", str(root / "history.sqlite"))
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))  # jedi's cache (completion, inspection)
        pythonpath = os.environ.get("PYTHONPATH")
        mp.setenv(
            "PYTHONPATH",
            str(REPO_ROOT) if not pythonpath else os.pathsep.join([str(REPO_ROOT), pythonpath]),
        )
        yield spec_dir
