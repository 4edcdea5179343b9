"""Published notebooks nobody here wrote give the same outputs on Loom's kernel as on
ipykernel (issue 14): each notebook under ``published/`` (vendored from PyPI source
distributions, licences kept; see ``published/README.md``) is run by nbclient under both
kernels, in a copy of its directory, and compared cell by cell.

Normalised as in ``test_ipykernel_parity``: memory addresses masked, a stream's chunks
joined, figures compared by presence (their pixels are not), errors by name and value
(Loom's default traceback layout is its own). Random numbers are made the same on both
sides by seeding ``random`` and numpy in a cell run before the notebook's first (its
outputs are not compared). The two kernels run their copies at the same time: a notebook
keeps about one core busy at a time (a kernel starting, a cell computing, nbclient), so on
two cores the two runs overlap instead of taking turns (the module took 65-74 s instead
of 110 s).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

import nbformat as _nbformat
import pytest
from test_ipykernel_parity import execute_in_async, normalise
from test_widgets import Ids

pytestmark = pytest.mark.peer
nbformat: Any = _nbformat

KERNELS = ("python3", "loom")
HERE = Path(__file__).resolve().parent / "published"
NOTEBOOKS = sorted(path.relative_to(HERE).as_posix() for path in HERE.glob("*/*.ipynb"))
SEED = (
    "import random as _r\n_r.seed(0)\n"
    "try:\n    import numpy as _np\n    _np.random.seed(0)\nexcept ImportError:\n    pass\n"
    "del _r"
)
_DURATION = re.compile(r"\b\d+(\.\d+)?\s?(ns|µs|μs|us|ms|s)\b")
#: %timeit chooses its loop count by speed, and warns of a slow run when one happened.
_LOOPS = re.compile(r"\b\d[\d,]* loops? each")
_SLOWEST = re.compile(r"^The slowest run took .*\n", re.M)
#: Random identifiers: UUIDs, display ids (32 hex digits).
_RANDOM_ID = re.compile(r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b")

#: Notebooks whose outputs differ for a reason Loom states (docs/kernel.md): strict, so a
#: fix shows up as an unexpected pass.
KNOWN_DIFFERENCES: dict[str, str] = {}

#: (notebook, code cell number from 1) -> (pattern, replacement, reason): one cell's outputs
#: masked where they differ for a stated reason; every other cell is compared strictly.
MASKED: dict[tuple[str, int], tuple[re.Pattern[str], str, str]] = {
    ("ipython/Cell Magics.ipynb", 1): (
        # The value is the repr of a str: its line breaks are the two characters \n.
        re.compile(r"(magics:\\n)[^\\']*|(Automagic is )[^']*"),
        r"\1\2<masked>",
        "%lsmagic: the same value (a str) in the same layout, but the names are those of the"
        " magics each kernel has (Loom's are a subset of IPython's: docs/kernel.md's table),"
        " and Loom has no automagic",
    ),
}


#: For a whole notebook on both kernels: under pytest-timeout's 120 s, so that a hang fails
#: with the notebook's name rather than a dump of threads.
NOTEBOOK_TIMEOUT_S = 100


async def run(notebook: str, kernel: str, tmp_path: Path) -> Any:
    """Run a copy of ``notebook`` (in a copy of its directory) with nbclient on ``kernel``,
    errors kept as outputs."""
    source = HERE / notebook
    workdir = tmp_path / kernel
    shutil.copytree(source.parent, workdir)
    nb = nbformat.read(workdir / source.name, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(SEED))
    return await execute_in_async(nb, kernel, workdir)


async def run_on_both(notebook: str, tmp_path: Path) -> list[Any]:
    """The notebook run on each of :data:`KERNELS` at the same time, in that order."""
    async with asyncio.timeout(NOTEBOOK_TIMEOUT_S):
        return list(await asyncio.gather(*(run(notebook, k, tmp_path) for k in KERNELS)))


def comparable(nb: Any, notebook: str = "") -> list[list[dict[str, Any]]]:
    """Each code cell's outputs (the seeding cell left out), normalised; a cell of
    :data:`MASKED` has its stated difference masked."""
    cells = []
    for number, cell in enumerate((c for c in nb.cells[1:] if c.cell_type == "code"), 1):
        merged: list[dict[str, Any]] = []
        for output in map(normalise, map(dict, cell.outputs)):
            if output.get("output_type") == "error":
                output = {
                    "output_type": "error",
                    "ename": output["ename"],
                    "evalue": output["evalue"],
                }
            last = merged[-1] if merged else None
            if (
                last
                and last["output_type"] == output["output_type"] == "stream"
                and (last["name"] == output["name"])
            ):
                last["text"] += output["text"]
            else:
                merged.append(output)
        # Masked once a stream's chunks are joined: a line may arrive in several chunks.
        for output in merged:
            if output["output_type"] == "stream":
                text = _SLOWEST.sub("", output["text"])
                output["text"] = _LOOPS.sub("<n> loops each", _DURATION.sub("<time>", text))
        masked = MASKED.get((notebook, number))
        if masked is not None:
            merged = _masked(merged, masked[0], masked[1])
        cells.append(_without_random_ids(merged))
    return cells


def _masked(value: Any, pattern: re.Pattern[str], replacement: str) -> Any:
    if isinstance(value, str):
        return pattern.sub(replacement, value)
    if isinstance(value, dict):
        return {key: _masked(item, pattern, replacement) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, pattern, replacement) for item in value]
    return value


def _without_random_ids(value: Any) -> Any:
    if isinstance(value, str):
        return _RANDOM_ID.sub("<id>", value)
    if isinstance(value, dict):
        return {key: _without_random_ids(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_random_ids(item) for item in value]
    return value


@pytest.mark.parametrize(
    "notebook",
    [
        pytest.param(name, marks=pytest.mark.xfail(reason=KNOWN_DIFFERENCES[name], strict=True))
        if name in KNOWN_DIFFERENCES
        else name
        for name in NOTEBOOKS
    ],
)
def test_a_published_notebook_gives_ipykernels_outputs(notebook: str, tmp_path: Path) -> None:
    notebooks = asyncio.run(run_on_both(notebook, tmp_path))
    ipykernel, loom = (comparable(nb, notebook) for nb in notebooks)
    assert len(loom) == len(ipykernel)
    differ = [
        f"code cell {index + 1}:\n  ipykernel: {theirs!r}\n  loom:      {ours!r}"
        for index, (theirs, ours) in enumerate(zip(ipykernel, loom, strict=True))
        if ours != theirs
    ]
    assert not differ, f"{notebook}\n" + "\n".join(differ)
    # Widgets: the state nbclient saves, where an ipywidgets Output keeps what it captured.
    ipykernel_state, loom_state = map(widget_state, notebooks)
    assert loom_state == ipykernel_state, notebook


def widget_state(nb: Any) -> Any:
    """The widget state saved in ``nb``'s metadata, model ids renamed in order of
    appearance and captured errors reduced to their name and value."""
    saved = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return Ids()(_errors_by_name(saved.get("state", {})))


def _errors_by_name(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("output_type") == "error":
            return {key: value[key] for key in ("output_type", "ename", "evalue")}
        return {key: _errors_by_name(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_errors_by_name(item) for item in value]
    return value
