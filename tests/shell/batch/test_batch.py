"""``loom run`` (shell.batch._run): pure parts in memory, the command as real processes.

End-to-end tests run ``python -m shell.batch ARGS`` against real kernels (Loom's
own and ipykernel's "python3"). Every process gets a deadline; whatever a test
started is SIGKILLed by PID in ``finally`` (for the runner: it and the kernels
it launched, found in /proc before it is killed). Each test has its own
history file and Jupyter runtime dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat as _nbformat
import pytest
from _support import assert_no_thread_but_main

from kernel import connect_client
from kernel.client._manager import pick_ports
from kernel.protocol import ConnectionInfo, Message
from shell.batch._cell_names import CellNames
from shell.batch._notebook import NotebookRecorder
from shell.batch._report import OutputWriter, TextRenderer, json_record
from shell.batch._run import main as batch_main
from shell.batch._source import Cell, Document, split_script

ROOT = Path(__file__).resolve().parents[3]
KERNELS = ["loom", "python3"]
DEADLINE = 60.0
#: nbformat has no type hints; typed as Any so strict mypy accepts its calls.
nbformat: Any = _nbformat
#: End-to-end tests: real kernel processes.
peer = pytest.mark.peer


# -- pure parts -------------------------------------------------------------------


def test_split_at_percent_markers() -> None:
    text = "import os\n\n# %%\nx = 1\n\n# %% [markdown]\n# # Title\n# words\n#%% second\ny = 2\n"
    cells = split_script(text)
    assert [(c.index, c.kind, c.source, c.line) for c in cells] == [
        (0, "code", "import os", 1),
        (1, "code", "x = 1", 4),
        (2, "markdown", "# Title\nwords", 7),
        (3, "code", "y = 2", 10),
    ]
    assert [c.index for c in cells if c.is_runnable] == [0, 1, 3]


def test_blank_preamble_is_no_cell_and_raw_cells_do_not_run() -> None:
    cells = split_script("\n\n# %% [raw]\nraw text\n# %%\n\n# %%\nz = 3\n")
    assert [(c.kind, c.source) for c in cells] == [
        ("raw", "raw text"),
        ("code", ""),
        ("code", "z = 3"),
    ]
    assert [c.source for c in cells if c.is_runnable] == ["z = 3"]


def test_no_markers_or_no_split_give_one_cell() -> None:
    assert [c.source for c in split_script("a = 1\nb = 2\n")] == ["a = 1\nb = 2"]
    text = "a = 1\n# %%\nb = 2\n"
    assert [c.source for c in split_script(text, split=False)] == ["a = 1\n# %%\nb = 2"]
    assert len(split_script("%%timeit\n# %%time\nx\n")) == 1  # magics are not markers


def _message(msg_type: str, content: dict[str, Any]) -> Message:
    return Message.create(msg_type, content, session="test")


def test_recorder_merges_streams_and_honours_clear_and_updates() -> None:
    doc = Document("t.py", [Cell(0, "code", "x")])
    recorder = NotebookRecorder.for_document(doc)
    recorder.begin(0)
    recorder.add(0, _message("stream", {"name": "stdout", "text": "a"}))
    recorder.add(0, _message("stream", {"name": "stdout", "text": "b"}))
    recorder.add(0, _message("stream", {"name": "stderr", "text": "e"}))
    recorder.add(0, _message("clear_output", {"wait": True}))
    assert len(recorder.notebook["cells"][0]["outputs"]) == 2  # cleared only at the next output
    display = {"data": {"text/plain": "1"}, "metadata": {}, "transient": {"display_id": "d"}}
    recorder.add(0, _message("display_data", display))
    update = {"data": {"text/plain": "2"}, "metadata": {}, "transient": {"display_id": "d"}}
    recorder.add(0, _message("update_display_data", update))
    recorder.finish(0, 7)
    cell = recorder.notebook["cells"][0]
    assert cell["execution_count"] == 7
    assert cell["outputs"] == [
        {"output_type": "display_data", "data": {"text/plain": "2"}, "metadata": {}}
    ]
    nbformat.validate(nbformat.from_dict(recorder.notebook))


def test_json_records() -> None:
    assert json_record(2, _message("stream", {"name": "stderr", "text": "x"})) == {
        "cell": 2,
        "type": "stream",
        "name": "stderr",
        "text": "x",
    }
    error = {"ename": "E", "evalue": "v", "traceback": ["t"]}
    assert json_record(0, _message("error", error)) == {"cell": 0, "type": "error", **error}
    assert json_record(0, _message("status", {"execution_state": "idle"})) is None


# -- running the command ------------------------------------------------------------


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["LOOM_HISTORY_FILE"] = str(tmp_path / "history.sqlite")
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    env.pop("NO_COLOR", None)
    return env


def _descendants(pid: int) -> list[int]:
    """PIDs of ``pid``'s children and their children (Linux /proc), best effort."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
                found.append(int(child))
                found.extend(_descendants(int(child)))
    return found


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a still-running process and whatever it started, by PID."""
    if proc.poll() is None:
        for pid in [*_descendants(proc.pid), proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@contextlib.contextmanager
def spawn(tmp_path: Path, *args: str, merge: bool = False) -> Iterator[subprocess.Popen[str]]:
    """``python -m shell.batch ARGS`` with pipes, killed (with its kernels) on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "shell.batch", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge else subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        _kill_tree(proc)


def run(tmp_path: Path, *args: str, stdin: str = "", merge: bool = False) -> Finished:
    with spawn(tmp_path, *args, merge=merge) as proc:
        out, err = proc.communicate(stdin, timeout=DEADLINE)
        return Finished(proc.returncode, out, err or "")


def script(tmp_path: Path, text: str, name: str = "job.py") -> str:
    (tmp_path / name).write_text(text)
    return name


def assert_clean_stderr(stderr: str) -> None:
    """No traceback of the runner itself, no colour codes in a pipe."""
    assert "shell/_batch" not in stderr, stderr
    assert "asyncio" not in stderr, stderr
    assert "\x1b[" not in stderr


# -- exit status, errors and order -----------------------------------------------------


@peer
@pytest.mark.parametrize("kernel", KERNELS)
def test_success_prints_outputs_in_order(tmp_path: Path, kernel: str) -> None:
    name = script(
        tmp_path,
        "import sys\n"
        "for i in range(3):\n"
        "    print(f'out{i}', flush=True)\n"
        "    print(f'err{i}', file=sys.stderr, flush=True)\n"
        "# %%\n"
        "6 * 7\n",
    )
    result = run(tmp_path, name, "--kernel", kernel, merge=True)
    assert result.returncode == 0, result.stdout
    assert result.stdout.split() == ["out0", "err0", "out1", "err1", "out2", "err2", "42"]


@peer
def test_first_error_stops_the_run(tmp_path: Path) -> None:
    name = script(tmp_path, "print('one')\n# %%\n1 / 0\n# %%\nprint('never')\n")
    result = run(tmp_path, name)
    assert result.returncode == 1
    assert result.stdout == "one\n"
    assert "ZeroDivisionError" in result.stderr
    assert "cell 1 (job.py:3) failed; not running the remaining cells" in result.stderr
    assert_clean_stderr(result.stderr)


@peer
@pytest.mark.parametrize("kernel", KERNELS)
def test_tracebacks_number_cells_as_the_run_does(tmp_path: Path, kernel: str) -> None:
    """Issue 15 item 17: ``Cell In[2]`` (the execution count) for our ``cell 1 (err.py:3)``."""
    name = script(
        tmp_path, "def f():\n    return 1 / 0\n\n# %%\ny = 2\nf()\n# %%\nprint('never')\n"
    )
    result = run(tmp_path, name, "--kernel", kernel)
    assert result.returncode == 1
    assert "Cell In[" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert "cell 1 (job.py:6)" in lines  # the frame of the failing cell: the file's line
    assert any(line.startswith("cell 0 (job.py:2), in f") for line in lines), lines
    assert "loom run: cell 1 (job.py:5) failed; not running the remaining cells" in lines
    assert_clean_stderr(result.stderr)


def test_malformed_outputs_are_one_line_in_the_log() -> None:
    """Issue 15 item 21: a kernel may sign anything; the log says what was wrong."""
    out, err = io.StringIO(), io.StringIO()
    renderer = TextRenderer(OutputWriter(out, err))
    renderer.output(0, _message("display_data", {"data": "oops"}))
    renderer.output(0, _message("execute_result", {"data": ["x"], "execution_count": 1}))
    renderer.output(0, _message("display_data", {"data": {"image/png": "%%%"}}))
    assert out.getvalue().splitlines() == [
        "[malformed output: its data is a str, not a MIME bundle]",
        "[malformed output: its data is a list, not a MIME bundle]",
        "[output of type image/png]",  # loom run never decodes images
    ]
    assert err.getvalue() == ""


def test_cell_names_rewrite_known_counts_and_keep_colours() -> None:
    names = CellNames("nb.ipynb")
    names.ran(4, Cell(2, "code", "x", None))
    names.ran(5, Cell(3, "code", "x", 10))
    loom = "\x1b[32mCell In[4]\x1b[39;49;00m, line \x1b[32m2\x1b[39;49;00m\n  1 x"
    assert names.rename(loom) == "\x1b[32mcell 2, line 2\x1b[39;49;00m\n  1 x"
    ipython = (
        "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[5]\x1b[39m\x1b[32m, line 3\x1b[39m, in f"
    )
    assert names.rename(ipython) == "\x1b[36mcell 3 (nb.ipynb:12)\x1b[39;49;00m, in f"
    assert names.rename("Cell In[9], line 1") == "Cell In[9], line 1"  # not one of ours
    assert names.rename("Cell In[5], line 1\nCell In[4], line 7") == (
        "cell 3 (nb.ipynb:10)\ncell 2, line 7"
    )


@peer
def test_allow_errors_runs_every_cell_and_still_fails(tmp_path: Path) -> None:
    name = script(tmp_path, "1 / 0\n# %%\nprint('after')\n# %%\n[][1]\n# %%\nprint('end')\n")
    result = run(tmp_path, name, "--allow-errors")
    assert result.returncode == 1
    assert result.stdout == "after\nend\n"
    assert "ZeroDivisionError" in result.stderr
    assert "IndexError" in result.stderr
    assert "2 of 4 cells failed (cells 0, 2)" in result.stderr


@peer
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_killed_mid_run_exits_2(tmp_path: Path, kernel: str) -> None:
    name = script(
        tmp_path,
        "print('before', flush=True)\n"
        "# %%\n"
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n"
        "# %%\n"
        "print('never')\n",
    )
    start = time.monotonic()
    result = run(tmp_path, name, "--kernel", kernel)
    assert time.monotonic() - start < 30
    assert result.returncode == 2
    assert result.stdout == "before\n"
    assert "died while running cell 1 (job.py:3): it was killed by SIGKILL" in result.stderr
    assert_clean_stderr(result.stderr)


@peer
def test_output_is_streamed_while_the_cell_runs(tmp_path: Path) -> None:
    name = script(
        tmp_path, "import time\nprint('first', flush=True)\ntime.sleep(2)\nprint('last')\n"
    )
    with spawn(tmp_path, name) as proc:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=DEADLINE), "no output at all"
            assert proc.stdout.readline() == "first\n"
            assert proc.poll() is None, "the line came only when the process ended"
        assert proc.stdout.read() == "last\n"
        assert proc.wait(timeout=DEADLINE) == 0


@peer
def test_started_kernel_is_shut_down(tmp_path: Path) -> None:
    name = script(tmp_path, "import os\nprint(os.getpid())\n")
    result = run(tmp_path, name)
    assert result.returncode == 0
    pid = int(result.stdout)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- stdin ------------------------------------------------------------------------


@peer
@pytest.mark.parametrize("kernel", KERNELS)
def test_stdin_is_forwarded_to_input(tmp_path: Path, kernel: str) -> None:
    name = script(
        tmp_path,
        "print('hello')\nname = input('name? ')\nage = input()\nprint(name, age)\n",
    )
    result = run(tmp_path, name, "--kernel", kernel, stdin="bob\n42\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\nname? bob 42\n"


@peer
def test_script_from_stdin(tmp_path: Path) -> None:
    code = "x = 20\n# %%\nprint(x + 1)\nprint(repr(input('? ')))\n"
    result = run(tmp_path, "-", stdin=code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "21\n? ''\n"
    assert "stdin holds the script" in result.stderr


@peer
def test_input_at_end_of_stdin_answers_empty(tmp_path: Path) -> None:
    result = run(tmp_path, script(tmp_path, "print(repr(input()))\n"), stdin="")
    assert result.returncode == 0
    assert result.stdout == "''\n"
    assert "end of file" in result.stderr


# -- --json and --timeout ----------------------------------------------------------


@peer
def test_json_records_and_summary(tmp_path: Path) -> None:
    name = script(
        tmp_path,
        "print('hi')\n"
        "# %% [markdown]\n"
        "# text\n"
        "# %%\n"
        "from IPython.display import display\n"
        "display({'text/plain': 'shown', 'text/html': '<b>shown</b>'}, raw=True)\n"
        "'result'\n"
        "# %%\n"
        "raise ValueError('bad')\n",
    )
    result = run(tmp_path, name, "--json", "--kernel", "python3")
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0] == {"cell": 0, "type": "stream", "name": "stdout", "text": "hi\n"}
    assert records[1]["cell"] == 2
    assert records[1]["type"] == "display_data"
    assert records[1]["data"]["text/html"] == "<b>shown</b>"
    assert records[2]["type"] == "execute_result"
    assert records[2]["data"]["text/plain"] == "'result'"
    assert records[3]["cell"] == 3
    assert records[3]["type"] == "error"
    assert (records[3]["ename"], records[3]["evalue"]) == ("ValueError", "bad")
    assert isinstance(records[3]["traceback"], list)
    assert records[4]["type"] == "summary"
    assert (records[4]["cells"], records[4]["errors"], records[4]["status"]) == (3, 1, "error")
    assert len(records) == 5
    assert "ValueError" not in result.stderr  # the traceback is in the records


@peer
def test_json_summary_when_the_kernel_dies(tmp_path: Path) -> None:
    name = script(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n")
    result = run(tmp_path, name, "--json")
    assert result.returncode == 2
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["type"] == "summary"
    assert summary["status"] == "kernel_died"


@peer
@pytest.mark.parametrize("kernel", KERNELS)
def test_timeout_interrupts_the_cell(tmp_path: Path, kernel: str) -> None:
    name = script(
        tmp_path,
        "import time\nprint('start', flush=True)\ntime.sleep(60)\n# %%\nprint('never')\n",
    )
    start = time.monotonic()
    result = run(tmp_path, name, "--kernel", kernel, "--timeout", "1")
    assert time.monotonic() - start < 30
    assert result.returncode == 1
    assert result.stdout == "start\n"
    assert "cell 0 (job.py:1) timed out after 1 s; interrupting the kernel" in result.stderr
    assert "KeyboardInterrupt" in result.stderr
    assert_clean_stderr(result.stderr)


# -- notebooks -----------------------------------------------------------------------


def _notebook(tmp_path: Path, *sources: str, name: str = "in.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A notebook")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def _outputs(path: Path) -> list[tuple[int | None, list[dict[str, Any]]]]:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return [(c.execution_count, c.outputs) for c in nb.cells if c.cell_type == "code"]


@peer
def test_notebook_outputs_written_with_o(tmp_path: Path) -> None:
    path = _notebook(
        tmp_path,
        "print('a')\nprint('b')",
        "import sys; print('e', file=sys.stderr)\n40 + 2",
        "1 / 0",
        "print('never')",
    )
    result = run(tmp_path, path.name, "-o", "out.ipynb")
    assert result.returncode == 1
    assert _outputs(path)[0] == (None, [])  # the source is untouched
    (c1, o1), (c2, o2), (c3, o3), (c4, o4) = _outputs(tmp_path / "out.ipynb")
    assert (c1, o1) == (1, [{"output_type": "stream", "name": "stdout", "text": "a\nb\n"}])
    assert c2 == 2
    assert o2[0] == {"output_type": "stream", "name": "stderr", "text": "e\n"}
    assert o2[1]["output_type"] == "execute_result"
    assert o2[1]["data"] == {"text/plain": "42"}
    assert o2[1]["execution_count"] == 2
    assert c3 == 3
    assert o3[0]["output_type"] == "error"
    assert o3[0]["ename"] == "ZeroDivisionError"
    assert (c4, o4) == (None, [])  # not run after the error


@peer
def test_notebook_inplace(tmp_path: Path) -> None:
    path = _notebook(tmp_path, "x = 3", "x * 2")
    result = run(tmp_path, path.name, "--inplace")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "6\n"
    (_, o1), (c2, o2) = _outputs(path)
    assert o1 == []
    assert c2 == 2
    assert o2[0]["data"] == {"text/plain": "6"}
    metadata = nbformat.read(path, as_version=4).metadata
    assert metadata["language_info"]["name"] == "python"


@peer
def test_script_to_notebook(tmp_path: Path) -> None:
    name = script(tmp_path, "# %% [markdown]\n# Hello\n# %%\nprint('x')\n")
    result = run(tmp_path, name, "-o", "out.ipynb")
    assert result.returncode == 0, result.stderr
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code"]
    assert nb.cells[0].source == "Hello"
    assert nb.cells[1].outputs[0]["text"] == "x\n"
    assert nb.metadata["kernelspec"]["name"] == "loom"


@peer
def test_notebook_keeps_figures_and_ipython_displays(tmp_path: Path) -> None:
    # Issue 14: no `%matplotlib inline` needed; IPython.display objects and a display
    # updated by its handle are written as the page would show them.
    pytest.importorskip("matplotlib")
    pytest.importorskip("IPython")
    name = script(
        tmp_path,
        "# %%\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\n"
        "# %%\nfrom IPython.display import Markdown, display\n"
        "h = display(Markdown('a'), display_id=True)\nh.update(Markdown('b'))\n",
    )
    result = run(tmp_path, name, "-o", "out.ipynb")
    assert result.returncode == 0, result.stderr
    (_, figure), (_, markdown) = _outputs(tmp_path / "out.ipynb")
    assert [sorted(o["data"]) for o in figure] == [["image/png", "text/plain"]]
    assert [o["data"]["text/markdown"] for o in markdown] == ["b"]


# -- input and usage errors --------------------------------------------------------


@peer
@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (["missing.py"], {}, "missing.py: no such file"),
        (["bad.ipynb"], {"bad.ipynb": "not json"}, "bad.ipynb is not a valid notebook"),
        (["bad.ipynb"], {"bad.ipynb": '{"cells": []}'}, "bad.ipynb is not a notebook"),
        (["job.py", "--inplace"], {"job.py": "1"}, "--inplace needs a notebook"),
        (["job.py", "-o", "no/such/dir/x.ipynb"], {"job.py": "1"}, "does not exist"),
        (["job.py", "--kernel", "no-such-kernel"], {"job.py": "1"}, "cannot start the kernel"),
        (["job.py", "--timeout", "-1"], {"job.py": "1"}, "positive number of seconds"),
    ],
)
def test_unusable_input_exits_2(
    tmp_path: Path, args: list[str], files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = run(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# -- --existing ----------------------------------------------------------------------


def _kernel_argv(kernel: str, connection_file: Path) -> list[str]:
    module = "kernel" if kernel == "loom" else "ipykernel_launcher"
    return [sys.executable, "-m", module, "-f", str(connection_file)]


async def _wait_ready(info: ConnectionInfo) -> None:
    async with asyncio.timeout(DEADLINE), connect_client(info):
        pass


@contextlib.contextmanager
def separate_kernel(tmp_path: Path, kernel: str) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A kernel started by the test itself on a connection file it wrote; killed at the end."""
    shell, iopub, stdin, control, hb = pick_ports()
    info = ConnectionInfo(
        shell_port=shell,
        iopub_port=iopub,
        stdin_port=stdin,
        control_port=control,
        hb_port=hb,
        key=ConnectionInfo.new_key(),
    )
    path = info.write(tmp_path / "connection.json")
    log = (tmp_path / "kernel.log").open("w")
    proc = subprocess.Popen(
        _kernel_argv(kernel, path),
        cwd=tmp_path,
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        asyncio.run(_wait_ready(info))
        yield proc, path
    finally:
        _kill_tree(proc)
        log.close()


@peer
@pytest.mark.parametrize("kernel", KERNELS)
def test_existing_kernel_is_used_and_left_running(tmp_path: Path, kernel: str) -> None:
    with separate_kernel(tmp_path, kernel) as (proc, path):
        first = run(tmp_path, script(tmp_path, "shared = 41\n", "a.py"), "--existing", str(path))
        assert first.returncode == 0, first.stderr
        second = run(tmp_path, script(tmp_path, "shared + 1\n", "b.py"), "--existing", path.name)
        assert second.returncode == 0, second.stderr
        assert second.stdout == "42\n"
        assert proc.poll() is None, "the existing kernel must be left running"


@peer
def test_existing_kernel_dying_exits_2(tmp_path: Path) -> None:
    with separate_kernel(tmp_path, "loom") as (proc, path):
        name = script(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)\n")
        start = time.monotonic()
        result = run(tmp_path, name, "--existing", str(path))
        assert time.monotonic() - start < 30
        assert result.returncode == 2
        assert "stopped answering its heartbeat" in result.stderr
        proc.wait(timeout=DEADLINE)
        # Now nobody answers at all: the runner says so instead of hanging.
        again = run(tmp_path, name, "--existing", str(path))
        assert again.returncode == 2
        assert "cannot connect to the kernel" in again.stderr
        assert_clean_stderr(again.stderr)


def read_until(proc: subprocess.Popen[str], marker: str) -> str:
    """What ``proc`` writes to stdout up to and including ``marker`` (raw reads of the
    pipe, so nothing waits in a text buffer where ``select`` cannot see it)."""
    assert proc.stdout is not None
    fd, seen = proc.stdout.fileno(), b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while marker.encode() not in seen:
            assert selector.select(timeout=DEADLINE), f"no {marker!r} in {seen!r}"
            chunk = os.read(fd, 65536)
            assert chunk, f"end of output before {marker!r}: {seen!r}"
            seen += chunk
    return seen.decode()


@peer
def test_existing_kernel_stopped_is_not_responding_not_dead(tmp_path: Path) -> None:
    """Silence alone meant death for an --existing kernel; the console said "not
    responding" if its port still accepts connections. Both now ask the same watcher."""
    with separate_kernel(tmp_path, "loom") as (kernel, path):
        # The cell runs until the test says so (the file "go"), so its reply cannot end
        # the run before the kernel is seen to answer again.
        name = script(
            tmp_path,
            "import os, time\nprint('nap' + 'ping', flush=True)\n"
            "while not os.path.exists('go'):\n    time.sleep(0.05)\n",
        )
        with spawn(tmp_path, name, "--existing", str(path), merge=True) as proc:
            read_until(proc, "napping")
            os.kill(kernel.pid, signal.SIGSTOP)
            try:
                read_until(proc, f"the kernel at {path} is not responding")
            finally:
                os.kill(kernel.pid, signal.SIGCONT)
            assert proc.stdout is not None
            rest = read_until(proc, "answering again")
            (tmp_path / "go").touch()
            rest += proc.stdout.read()
            assert proc.wait(timeout=DEADLINE) == 0, rest
            assert "died" not in rest


# -- Ctrl-C and a closed stdout ------------------------------------------------------


@peer
@pytest.mark.parametrize("kernel", KERNELS)
def test_ctrl_c_exits_130_and_stops_the_kernel(tmp_path: Path, kernel: str) -> None:
    name = script(tmp_path, "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n")
    # A shell without job control starts background jobs with SIGINT ignored, and that
    # would be inherited: give the runner Python's usual KeyboardInterrupt handler.
    wrapper = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"sys.argv = ['loom run', {name!r}, '--kernel', {kernel!r}]; "
        "runpy.run_module('shell.batch', run_name='__main__')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", wrapper],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        kernel_pid = int(proc.stdout.readline())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 130
        assert "loom run: interrupted" in err
        with pytest.raises(ProcessLookupError):
            os.kill(kernel_pid, 0)
    finally:
        _kill_tree(proc)


@peer
def test_closed_stdout_stops_the_run(tmp_path: Path) -> None:
    name = script(tmp_path, "for i in range(200000):\n    print(i)\n# %%\nprint('next')\n")
    with spawn(tmp_path, name) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "0\n"
        proc.stdout.close()
        assert proc.wait(timeout=DEADLINE) == 1
        assert proc.stderr is not None
        assert "stdout was closed; not running the remaining cells" in proc.stderr.read()


@peer
def test_in_process_run_starts_no_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    name = script(tmp_path, "print('in process')\n# %%\n1 + 1\n")
    assert batch_main([name, "--timeout", "30"]) == 0
    assert capsys.readouterr().out == "in process\n2\n"
    assert_no_thread_but_main()
