"""``%px`` without a console: ``loom run`` on a script, nbclient on a notebook.

Real processes: ``loom run`` (which starts its kernel, Loom's or ipykernel), the cluster a
script starts with ``%cluster start`` (its engines' PIDs are read from the output and must
be gone when ``loom run`` returns), and for nbclient a running cluster and the kernel it
starts from a kernelspec. Everything is killed by PID afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from _cluster_support import running_cluster
from _support import wait_gone
from nbclient import NotebookClient

from kernel.client._install import install_kernelspec

pytestmark = [pytest.mark.peer, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ["loom", "python3"]

SCRIPT = """\
# %%
%load_ext parallel
# %%
%cluster start -n 2
# %%
%px import os; print('pid=' + str(os.getpid()))
# %%
%px 1/0
# %%
print('not' + 'reached')
"""


@pytest.fixture
def jupyter_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Private Jupyter dirs, and a ``loom`` kernelspec that imports this checkout."""
    prefix = tmp_path / "prefix"
    install_kernelspec(prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("LOOM_HISTORY_FILE", str(tmp_path / "history.sqlite"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return tmp_path


@pytest.mark.parametrize("kernel", KERNELS)
def test_loom_run_fails_when_an_engine_raised_and_stops_its_cluster(
    kernel: str, jupyter_dirs: Path
) -> None:
    script = jupyter_dirs / "px_script.py"
    script.write_text(SCRIPT)
    pids: list[int] = []
    try:
        done = subprocess.run(
            [sys.executable, "-m", "shell", "run", "--kernel", kernel, str(script)],
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        output = done.stdout + done.stderr
        pids = [int(p) for p in re.findall(r"pid=(\d+)", output)]
        assert done.returncode == 1, output
        assert len(pids) == 2, output
        assert "ZeroDivisionError on engines 0, 1" in output
        assert "notreached" not in output
        assert "[output of type" not in output  # %px's progress is not logged as junk
        for pid in pids:  # the cluster %cluster start started is stopped with its kernel
            assert wait_gone(pid, 15), f"engine {pid} still runs after loom run returned"
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


CELLS = [
    "%load_ext parallel",
    "%px a = 6",
    "%px print('a is', a)",
    "%px a * 7",
    "%%px --targets 1\na + 1",
    "%px 1/0",
    "print('after ' + 'the error')",
]


def _text(cell: Any) -> str:
    parts = []
    for output in cell.outputs:
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif output["output_type"] == "error":
            parts.append(output["ename"] + ": " + output["evalue"])
            parts.extend(output["traceback"])
        elif "text/plain" in output.get("data", {}):  # not %px's progress (no text)
            parts.append(str(output["data"]["text/plain"]))
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(parts))
    return "\n".join(line for line in text.splitlines() if line.strip())


@pytest.mark.parametrize("kernel", KERNELS)
def test_nbclient_runs_a_notebook_with_px_cells(kernel: str, jupyter_dirs: Path) -> None:
    with running_cluster(2):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
        client = NotebookClient(nb, kernel_name=kernel, timeout=120, allow_errors=True)
        client.execute()
        nbformat.validate(nb)
        texts = [_text(cell) for cell in nb.cells]
        assert sorted(texts[2].splitlines()) == ["[stdout:0] a is 6", "[stdout:1] a is 6"]
        assert re.findall(r"Out\[(\d):\d+\]: 42", texts[3]) == ["0", "1"]
        assert re.findall(r"Out\[(\d):\d+\]: 7", texts[4]) == ["1"]
        errors = [o for o in nb.cells[5].outputs if o["output_type"] == "error"]
        assert [o["ename"] for o in errors] == ["PxError"]
        assert "ZeroDivisionError on engines 0, 1" in texts[5]
        assert texts[6] == "after the error"
