"""nbclient executes a notebook on the ``loom`` kernel, and the outputs are what Jupyter expects.

nbclient is the engine behind ``jupyter nbconvert --execute`` and papermill: it starts
the kernel from its kernelspec, sends each cell, and turns iopub traffic into notebook
outputs (applying ``clear_output`` and ``update_display_data`` itself).
"""

from __future__ import annotations

from typing import Any

import nbformat as _nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.peer
#: nbformat has no type hints; typed as Any for strict mypy.
nbformat: Any = _nbformat

CELLS = [
    "print('hello')",
    "import sys; print('oops', file=sys.stderr)",
    "6 * 7",
    "class H:\n    _repr_html_ = lambda self: '<b>x</b>'\ndisplay(H())",
    "h = display('a', display_id=True)\nh.update('b')",
    "h.update('c')  # updates the output of the cell above",
    "print('gone'); clear_output(); print('kept')",
    "%time sum(range(10))",
    "!echo hi",
    "x = !echo there\nx",
    "import asyncio\nawait asyncio.sleep(0)\n'awaited'",
    "async def f():\n    return 5\n\nasyncio.run(f())",
    "raise ValueError('bad')",
    "print('after the error')",
]


@pytest.fixture(scope="module")
def notebook() -> Any:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in CELLS])
    NotebookClient(nb, kernel_name="loom", timeout=60, allow_errors=True).execute()
    return nb


def outputs(nb: Any, index: int) -> list[dict[str, Any]]:
    return [dict(output) for output in nb.cells[index].outputs]


def result(nb: Any, index: int) -> str:
    (output,) = outputs(nb, index)
    assert output["output_type"] == "execute_result"
    assert output["execution_count"] == index + 1
    text: str = output["data"]["text/plain"]
    return text


def test_notebook_is_valid_and_counts_increment(notebook: Any) -> None:
    nbformat.validate(notebook)
    assert notebook.metadata.language_info.name == "python"
    assert [cell.execution_count for cell in notebook.cells] == list(range(1, len(CELLS) + 1))


def joined(nb: Any, index: int) -> list[dict[str, Any]]:
    """The cell's outputs, consecutive text of one stream joined: print() writes its text
    and its newline separately, and under load the kernel's first flush (a few ms) may send
    them in two messages, which nbclient keeps as two outputs (front ends show one)."""
    merged: list[dict[str, Any]] = []
    for output in outputs(nb, index):
        last = merged[-1] if merged else None
        if (
            last
            and output["output_type"] == last["output_type"] == "stream"
            and output["name"] == last["name"]
        ):
            last["text"] += output["text"]
        else:
            merged.append(output)
    return merged


def test_streams(notebook: Any) -> None:
    assert joined(notebook, 0) == [{"output_type": "stream", "name": "stdout", "text": "hello\n"}]
    assert joined(notebook, 1) == [{"output_type": "stream", "name": "stderr", "text": "oops\n"}]


def test_execute_result(notebook: Any) -> None:
    assert result(notebook, 2) == "42"


def test_display_html(notebook: Any) -> None:
    (output,) = outputs(notebook, 3)
    assert output["output_type"] == "display_data"
    assert output["data"]["text/html"] == "<b>x</b>"
    assert set(output["data"]) == {"text/html", "text/plain"}


def test_update_display_replaces_the_output_in_place(notebook: Any) -> None:
    (output,) = outputs(notebook, 4)
    assert output["output_type"] == "display_data"
    assert output["data"] == {"text/plain": "'c'"}
    assert outputs(notebook, 5) == []


def test_clear_output(notebook: Any) -> None:
    assert joined(notebook, 6) == [{"output_type": "stream", "name": "stdout", "text": "kept\n"}]


def test_time_magic(notebook: Any) -> None:
    timing, value = joined(notebook, 7)
    assert timing["output_type"] == "stream"
    assert "Wall time" in timing["text"]
    assert value["output_type"] == "execute_result"
    assert value["data"]["text/plain"] == "45"


def test_shell_escapes(notebook: Any) -> None:
    assert joined(notebook, 8) == [{"output_type": "stream", "name": "stdout", "text": "hi\n"}]
    assert result(notebook, 9) == "['there']"


def test_async(notebook: Any) -> None:
    assert result(notebook, 10) == "'awaited'"
    assert result(notebook, 11) == "5"


def test_error_cell_and_execution_continues(notebook: Any) -> None:
    (error,) = outputs(notebook, 12)
    assert error["output_type"] == "error"
    assert (error["ename"], error["evalue"]) == ("ValueError", "bad")
    assert any("Cell In[13]" in line for line in error["traceback"])
    assert joined(notebook, 13) == [
        {"output_type": "stream", "name": "stdout", "text": "after the error\n"}
    ]
