"""``%px`` at the ``loom`` console end to end: a real console in a real pty (pexpect), a
real kernel (Loom's or ipykernel) and a real cluster (controller and engines).

What the console adds is checked on what it draws: engine labels in colours of their own,
the status line while a blocking ``%px`` waits, output of a ``--noblock`` run appearing
above the live prompt, the ``[px]`` marker under ``%autopx``, Ctrl-C stopping the
engines and giving the prompt back, an engine killed mid-cell, ``%cluster start/stop``.
The console must run no second Python thread (``LOOM_DEBUG_THREADS``). Every process is
killed by PID afterwards: the kernel (its PID from a cell), the cluster's (from the
client), the engines a ``%cluster start`` made (their PIDs from a ``%px`` cell).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from _cluster_support import running_cluster
from _support import is_gone, wait_gone

pytestmark = [pytest.mark.peer, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ["loom", "python3"]
_SGR = r"(?:\x1b\[[0-9;]*m)*"
# Every marker a test waits for is built by the code ('a' + 'b'), so the echo of the
# typed input can never match it.


def prompt_re(count: int) -> str:
    return rf"In \[{_SGR}{count}{_SGR}\]: "


def label_re(stream: str, engine: int, colour: int) -> str:
    """An engine label as the console draws it: in that engine's colour."""
    return rf"\x1b\[{colour}m\[{stream}:{engine}\]\x1b\[0m"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("LOOM_HISTORY_FILE", str(tmp_path / "history.sqlite"))


class Console:
    """A ``loom`` console in a pty; the PIDs to kill afterwards."""

    def __init__(self, tmp_path: Path, kernel: str) -> None:
        env = dict(os.environ)
        env.pop("PYTHONASYNCIODEBUG", None)
        env.update(
            PROMPT_TOOLKIT_NO_CPR="1",
            TERM="xterm-256color",
            PAGER="cat",
            LOOM_CONSOLE_HISTORY=str(tmp_path / "console_history"),
            IPYTHONDIR=str(tmp_path / "ipython"),
            LOOM_DEBUG_THREADS=str(tmp_path / "threads.log"),
            PYTHONPATH=str(ROOT),
        )
        self.tmp_path = tmp_path
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "shell", "--kernel", kernel],
            cwd=str(ROOT),
            env=env,
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(40, 160),
            timeout=30,
        )
        self.log = (tmp_path / "pty.log").open("w")  # what the console drew
        self.child.logfile_read = self.log
        self.pids: list[int] = []
        self.count = 1  # the number of the next prompt
        self._prompt_seen = False

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        self.child.expect(pattern, timeout=timeout)
        match = self.child.match
        assert isinstance(match, re.Match)
        return match

    def prompt(self, timeout: float = 30) -> None:
        """Wait for the next prompt."""
        if not self._prompt_seen:
            self.expect(prompt_re(self.count), timeout)
        self._prompt_seen = True

    def cell(self, code: str) -> None:
        """Wait for the next prompt, then type ``code`` and Enter."""
        self.prompt()
        self._prompt_seen = False
        self.count += 1
        self.child.send(code + "\r")

    def close(self) -> None:
        if self.child.isalive():
            self.child.kill(signal.SIGKILL)
        self.child.close(force=True)
        self.log.close()
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def finish(self) -> None:
        """Ctrl-D, confirm; the console exits 0, its kernel goes, it ran one thread."""
        self.child.send("\x04")
        self.expect(r"Do you really want to exit \(\[y\]/n\)\?")
        self.child.send("y\r")
        self.child.expect(pexpect.EOF, timeout=30)
        self.child.close()
        assert self.child.exitstatus == 0
        log = self.tmp_path / "threads.log"
        counts = [int(n) for n in re.findall(r"threads=(\d+)", log.read_text())]
        assert counts, "LOOM_DEBUG_THREADS recorded nothing"
        assert set(counts) == {1}, f"the console ran other Python threads: {counts}"


@pytest.fixture
def console(tmp_path: Path) -> Iterator[list[Console]]:
    opened: list[Console] = []
    yield opened
    for c in opened:
        c.close()


def open_console(opened: list[Console], tmp_path: Path, kernel: str) -> Console:
    c = Console(tmp_path, kernel)
    opened.append(c)
    # The kernel's PID, so it is killed whatever happens.
    c.cell("import os; print('pid=' + str(os.getpid()))")
    c.expect(r"pid=(\d+)")
    pid = int(c.child.match.group(1))
    assert pid > 1
    c.pids.append(pid)
    return c


@pytest.mark.parametrize("kernel", KERNELS)
def test_px_at_the_console(kernel: str, tmp_path: Path, console: list[Console]) -> None:
    with running_cluster(4):
        c = open_console(console, tmp_path, kernel)
        c.cell("%load_ext parallel")

        # Per-engine output, each engine's label in its own colour.
        c.cell("%px print('engine' + 'says', 1)")
        c.prompt()
        for engine, colour in enumerate((36, 35, 33, 32)):
            assert re.search(label_re("stdout", engine, colour) + " enginesays 1", _drawn(c))

        # %%px --targets: only those engines run it.
        # A blank line ends the cell (IPython wants two, as in jupyter console).
        c.cell("%%px --targets 1,3\rprint('only' + 'these')\r" + "\r" * (kernel == "python3"))
        c.prompt()
        assert re.search(label_re("stdout", 1, 35) + " onlythese", _drawn(c))
        assert re.search(label_re("stdout", 3, 32) + " onlythese", _drawn(c))
        assert "[stdout:0] onlythese" not in _plain(c)
        assert "[stdout:2] onlythese" not in _plain(c)

        # The status line while a blocking %px waits, with a bar after --progress-after.
        c.cell("%px --progress-after 0.5 import time; time.sleep(2.5)")
        c.expect(r"%px .*│ [0-4]/4 engines done .*│ \d+ s ")
        c.expect(r"█*░+ ")  # the bar came after 0.5 s
        c.prompt()

        # --noblock: output appears above the live prompt as the engines produce it, also
        # for a run that is no longer the last one.
        c.cell("%px --noblock import time; time.sleep(1.5); print('late' + 'output')")
        c.cell("%px --noblock import time; time.sleep(1.0); print('second' + 'run'); 6 * 7")
        c.prompt()  # the prompt is back at once...
        # ...then, untyped (an engine runs them in turn: the first run's line first)
        c.expect(label_re("stdout", 0, 36) + r" lateoutput", timeout=20)
        c.expect(label_re("stdout", 0, 36) + r" secondrun", timeout=20)
        c.cell("%pxresult")
        c.expect(r"Out\[0:\d+\]:.* 42")
        c.prompt()
        # each engine's lines once: %pxresult shows the values, not the lines again
        assert _plain(c).count("] lateoutput") == 4
        assert _plain(c).count("] secondrun") == 4

        # %autopx: the prompt says so; cells go to the engines.
        c.cell("%autopx")
        c.expect(r"%autopx enabled")
        c.expect(r"\[px\] " + _SGR + prompt_re(c.count))
        c._prompt_seen = True
        c.cell("print('auto' + 'px')")
        c.expect(label_re("stdout", 2, 33) + r" autopx")
        c.cell("%autopx")
        c.expect(r"%autopx disabled")
        c.prompt()
        assert not re.search(r"\[px\] " + _SGR + prompt_re(c.count), _drawn(c))

        # Tab in %px code completes from the engines' namespace. (Their completer is
        # imported first: a cold one may take longer than the kernel waits for it.)
        c.cell(
            "%px from kernel.server.introspection._completion import complete as _c; "
            "_c('x', 1, {}); zz_on_engines = 1"
        )
        c.prompt()
        c.child.send("%px print(zz_on_eng\t")
        c.expect(r"ines")  # the rest of the name was inserted
        c.child.send(")\r")
        c.count += 1
        c._prompt_seen = False
        c.prompt()
        assert _plain(c).count("zz_on_engines)") >= 1

        # Ctrl-C during a long %px: the engines are interrupted, the prompt comes back;
        # an engine that ignores the signal is named after a few seconds.
        c.cell("%px -t 3 import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)")
        c.cell("%px import time; print('sleep' + 'ing'); time.sleep(60)")
        for _ in range(4):  # every engine runs it: a signal cannot come before the cell
            c.expect(r"\]\x1b\[0m sleeping")
        started = time.monotonic()
        c.child.sendintr()
        c.expect(r"Interrupted: sent SIGINT to engines 0-3")
        c.expect(r"Engine 3 did not stop within 3 s and may still be running", timeout=20)
        c.prompt(timeout=20)
        assert "_px_run.py" not in _plain(c)  # no traceback through the magics' frames
        assert time.monotonic() - started < 15
        c.cell("%px -t 0:3 print('still' + 'usable')")
        c.expect(r"stillusable")
        c.prompt()
        c.finish()


@pytest.mark.parametrize("kernel", KERNELS)
def test_engines_killed_during_a_cell_are_named(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    with running_cluster(4) as (_, client):
        engine_pids = {i: record.pid for i, record in client._records.items()}
        c = open_console(console, tmp_path, kernel)
        c.cell("%load_ext parallel")
        c.cell("%px import time; print('wait' + 'ing'); time.sleep(30)")
        c.expect(r"waiting")
        for engine in (1, 3):
            os.kill(engine_pids[engine], signal.SIGKILL)
        killed = time.monotonic()
        # One line per wake of the run: both deaths in one line, or (the controller
        # reaped them apart, as under load) one line each, in either order.
        named: set[str] = set()
        while named != {"1", "3"}:
            line = c.expect(
                r"engines? (1, 3|1|3) lost \(died: killed by signal 9 \(SIGKILL\)", timeout=20
            )
            named.update(line.group(1).split(", "))
        assert time.monotonic() - killed < 15  # said while engines 0 and 2 still run
        c.child.sendintr()  # they still sleep: Ctrl-C interrupts them, the prompt is back
        c.expect(r"Interrupted: sent SIGINT to engines 0, 2")
        c.prompt(timeout=30)
        c.cell("print('prompt' + 'works')")
        c.expect(r"promptworks")
        c.finish()


@pytest.mark.parametrize("kernel", KERNELS)
def test_cluster_start_and_stop_leave_no_engine(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    c = open_console(console, tmp_path, kernel)
    c.cell("%load_ext parallel")
    c.cell("%cluster start -n 2")
    c.prompt(timeout=90)
    c.cell("%px import os; print('pid=' + str(os.getpid()))")
    found = {int(p) for p in [c.expect(r"pid=(\d+)").group(1), c.expect(r"pid=(\d+)").group(1)]}
    assert len(found) == 2
    c.pids += sorted(found)
    c.cell("%cluster stop")
    c.prompt(timeout=60)
    for pid in found:
        assert wait_gone(pid, 15), f"engine {pid} still runs after %cluster stop"
    c.finish()
    assert all(is_gone(pid) for pid in found)


def _drawn(c: Console) -> str:
    """Everything the console drew so far, escape codes and all."""
    c.log.flush()
    return (c.tmp_path / "pty.log").read_text()


def _plain(c: Console) -> str:
    """What the console drew, without escape codes."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", _drawn(c))
