"""The ``loom`` console end to end: a real process in a real pty (pexpect), real kernels.

Every scenario runs against Loom's kernel and ipykernel ("python3"). Each
console gets private history files and runtime dir, and ``LOOM_DEBUG_THREADS``
pointing at a file in which it records the live Python threads at every
prompt: :func:`finish` fails the test if that ever shows a second thread.
Kernel PIDs are learnt from the kernel itself (``os.getpid()`` in a cell) and
killed by PID afterwards whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from _support import wait_gone

pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[3]
KERNELS = ["loom", "python3"]
_SGR = r"(?:\x1b\[[0-9;]*m)*"


# Every marker a test waits for is built by the code (print('a' + 'b')), so the
# echo of the typed input can never match it.


def prompt_re(count: int) -> str:
    """``In [count]:`` as prompt_toolkit draws it (colour codes between the parts)."""
    return rf"In \[{_SGR}{count}{_SGR}\]: "


def out_re(count: int, value: str) -> str:
    return rf"Out\[{count}\]: {_SGR}{re.escape(value)}"


def console_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    env.update(
        PROMPT_TOOLKIT_NO_CPR="1",  # nobody answers cursor-position requests in a pty
        TERM="xterm-256color",
        PAGER="cat",
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        LOOM_HISTORY_FILE=str(tmp_path / "kernel_history.sqlite"),
        LOOM_CONSOLE_HISTORY=str(tmp_path / "console_history"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        LOOM_DEBUG_THREADS=str(tmp_path / "threads.log"),
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


class Console:
    """A ``loom`` process in a pty, plus the PIDs to clean up after it."""

    def __init__(self, tmp_path: Path, *args: str, cwd: Path = ROOT, **env: str) -> None:
        self.tmp_path = tmp_path
        self.child = pexpect.spawn(
            sys.executable,
            # -P: like the `loom` script, whose sys.path never holds the working directory
            ["-P", "-m", "shell", *args],
            cwd=str(cwd),
            env=console_env(tmp_path, **env),
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(40, 120),
            timeout=30,
        )
        self.log = (tmp_path / "pty.log").open("w")  # what the console drew: read it on failure
        self.child.logfile_read = self.log
        self.kernel_pids: list[int] = []

    def expect(self, pattern: str, timeout: float = 30) -> None:
        self.child.expect(pattern, timeout=timeout)

    def run(self, code: str) -> None:
        self.child.send(code + "\r")

    def kernel_pid(self, count: int) -> int:
        """Run ``os.getpid()`` as cell ``count`` and remember the kernel's PID."""
        self.expect(prompt_re(count))
        self.run("import os; os.getpid()")
        self.expect(rf"Out\[{count}\]: {_SGR}(\d+)")
        pid = int(self.child.match.group(1))
        assert pid > 1, pid  # never let a parsing slip signal a process group or init
        self.kernel_pids.append(pid)
        return pid

    def close(self) -> None:
        if self.child.isalive():
            self.child.kill(signal.SIGKILL)
        self.child.close(force=True)
        self.log.close()
        for pid in self.kernel_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def thread_counts(self) -> list[int]:
        log = self.tmp_path / "threads.log"
        text = log.read_text() if log.exists() else ""
        return [int(n) for n in re.findall(r"threads=(\d+)", text)]


@pytest.fixture
def console(tmp_path: Path) -> Iterator[list[Console]]:
    """Consoles a test opens; closed (and their kernels killed) afterwards."""
    opened: list[Console] = []
    yield opened
    for c in opened:
        c.close()


def open_console(
    opened: list[Console], tmp_path: Path, *args: str, cwd: Path = ROOT, **env: str
) -> Console:
    c = Console(tmp_path, *args, cwd=cwd, **env)
    opened.append(c)
    return c


def finish(c: Console) -> None:
    """Ctrl-D, confirm, and check the console exited cleanly with its kernel gone."""
    c.child.send("\x04")
    c.expect(r"Do you really want to exit \(\[y\]/n\)\?")
    c.child.send("y\r")
    c.child.expect(pexpect.EOF, timeout=15)
    c.child.close()
    assert c.child.exitstatus == 0
    for pid in c.kernel_pids:
        assert wait_gone(pid, 5), f"kernel {pid} is still running"
    counts = c.thread_counts()
    assert counts, "LOOM_DEBUG_THREADS recorded nothing"
    assert set(counts) == {1}, f"the console ran other Python threads: {counts}"


# -- scenarios ------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_runs_code_and_completes_with_tab(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    c = open_console(console, tmp_path, "--kernel", kernel)
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run("print('answer', 6 * 7)")
    c.expect("answer 42")
    c.expect(prompt_re(3))
    c.run("exec('zz_' + 'uniq' + 'ue_name = 5')")  # so no history line suggests it
    c.expect(prompt_re(4))
    c.child.send("zz_uni\t")
    c.expect("que_name")  # the completion was inserted
    c.child.send("\r")
    c.expect(out_re(4, "5"))
    finish(c)


@pytest.mark.parametrize("kernel", KERNELS)
def test_ctrl_c_interrupts_a_running_cell(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    c = open_console(console, tmp_path, "--kernel", kernel)
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run('i = 0; exec(\'print("loop" + "ing")\\nwhile True: i += 1\')')
    c.expect("looping")  # the loop has started: an interrupt now cannot come too early
    c.child.sendintr()
    c.expect("KeyboardInterrupt")
    c.expect(prompt_re(3))
    c.run("print('after', i > 0)")
    c.expect("after True")
    finish(c)


@pytest.mark.parametrize("kernel", KERNELS)
def test_input_is_answered_at_the_console(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    c = open_console(console, tmp_path, "--kernel", kernel)
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run("name = input('your' + ' name? ')")
    c.expect("your name\\?")
    c.child.send("bob\r")
    c.expect(prompt_re(3))
    c.run("print(name * 2)")
    c.expect("bobbob")
    c.expect(prompt_re(4))
    c.run("import getpass; secret = getpass.getpass('pass' + 'word: ')")
    c.expect("password:")
    c.child.send("hunter2\r")
    c.expect(prompt_re(5))
    c.run("print('length', len(secret))")
    c.expect("length 7")
    assert "hunter2" not in (tmp_path / "pty.log").read_text()  # not echoed
    finish(c)


@pytest.mark.parametrize("kernel", KERNELS)
def test_background_output_appears_while_idle(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    c = open_console(console, tmp_path, "--kernel", kernel)
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run("import threading; threading.Timer(1.0, lambda: print('bg' + '-output')).start()")
    c.expect(prompt_re(3))
    # No key is pressed: the output must show up above the live prompt by itself.
    c.expect("bg-output", timeout=10)
    c.run("print('still', 'fine')")
    c.expect("still fine")
    finish(c)


@pytest.mark.parametrize("kernel", KERNELS)
def test_killed_kernel_is_reported_and_restarted(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    c = open_console(console, tmp_path, "--kernel", kernel)
    pid = c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run("import time; print('sleep' + 'ing'); time.sleep(60)")
    c.expect("sleeping")
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    c.expect("Kernel was killed by SIGKILL", timeout=5)
    # Seen from the child's exit, not from missed heartbeats (2.5 s of grace at least);
    # 2 s leaves room for a loaded CI machine.
    assert time.monotonic() - killed < 2.0
    c.expect(r"Restart kernel\? \[Y/n\]")
    c.child.send("y\r")
    c.expect("Kernel restarted")
    new_pid = c.kernel_pid(1)
    assert new_pid != pid
    c.expect(prompt_re(2))
    c.run("print('alive', 1 + 1)")
    c.expect("alive 2")
    finish(c)


def test_stopped_kernel_is_not_responding_then_recovers(
    tmp_path: Path, console: list[Console]
) -> None:
    c = open_console(console, tmp_path, "--kernel", "loom")
    pid = c.kernel_pid(1)
    c.expect(prompt_re(2))
    os.kill(pid, signal.SIGSTOP)
    try:
        c.expect("The kernel is not responding: it is stopped", timeout=10)
    finally:
        os.kill(pid, signal.SIGCONT)
    c.expect("The kernel is answering again", timeout=10)
    c.run("print('back', 3)")
    c.expect("back 3")
    finish(c)


def write_kernelspec(
    tmp_path: Path, name: str, code: str, *, executable: str = "python"
) -> dict[str, str]:
    """A Python kernelspec running ``code`` (``sys.argv[1]``: the connection file);
    returns the environment that makes it findable."""
    spec_dir = tmp_path / "jupyter" / "kernels" / name
    spec_dir.mkdir(parents=True)
    spec = {"argv": [executable, "-c", code, "{connection_file}"], "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps({**spec, "display_name": name}))
    return {"JUPYTER_PATH": str(tmp_path / "jupyter")}


def gated(gate: Path, code: str) -> str:
    """Kernel code that first waits (at most 60 s) until the test creates ``gate``: the
    test decides when the kernel gets going, so no timing stands in for the order."""
    wait = (
        "import os, sys, time\n"
        "for _ in range(6000):\n"
        f"    if os.path.exists({str(gate)!r}): break\n"
        "    time.sleep(0.01)\n"
    )
    return wait + code


LOOM_KERNEL = "from kernel.server import run_kernel; sys.exit(run_kernel(sys.argv[1]))"


def test_prompt_comes_before_the_kernel_and_an_early_cell_waits_for_it(
    tmp_path: Path, console: list[Console]
) -> None:
    gate = tmp_path / "go"
    env = write_kernelspec(tmp_path, "slowloom", gated(gate, LOOM_KERNEL))
    c = open_console(console, tmp_path, "--kernel", "slowloom", **env)
    c.expect(prompt_re(1))  # the kernel waits for the gate: the prompt did not wait for it
    c.run("print('early' + ' bird')")  # typed and entered before the kernel answers
    c.expect("Waiting for kernel slowloom to start")
    gate.touch()
    c.expect("early bird")
    c.kernel_pid(2)
    c.expect(prompt_re(3))
    c.run("print('count', 2 + 1)")
    c.expect("count 3")
    finish(c)


def test_kernel_that_cannot_start_ends_the_console(tmp_path: Path, console: list[Console]) -> None:
    gate = tmp_path / "go"
    env = write_kernelspec(tmp_path, "broken", gated(gate, "sys.exit(3)"))
    c = open_console(console, tmp_path, "--kernel", "broken", **env)
    c.expect(prompt_re(1))  # the kernel waits for the gate: the prompt did not wait for it
    gate.touch()
    c.expect(r"loom: kernel 'broken' exited with code 3")
    c.child.expect(pexpect.EOF, timeout=15)
    c.child.close()
    assert c.child.exitstatus == 1


def test_kernel_command_that_cannot_be_spawned_is_reported_before_any_prompt(
    tmp_path: Path, console: list[Console]
) -> None:
    env = write_kernelspec(tmp_path, "ghost", "", executable=str(tmp_path / "no-such-kernel"))
    c = open_console(console, tmp_path, "--kernel", "ghost", **env)
    c.expect(r"loom: cannot launch kernel 'ghost' \(.*no-such-kernel\)")
    c.child.expect(pexpect.EOF, timeout=15)
    c.child.close()
    assert c.child.exitstatus == 1
    c.log.flush()
    assert "In [" not in (tmp_path / "pty.log").read_text()  # it failed before any prompt


def test_restart_magic_starts_a_new_kernel(tmp_path: Path, console: list[Console]) -> None:
    c = open_console(console, tmp_path)  # the default kernel: loom
    pid = c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run("%restart")
    c.expect("Kernel restarted")
    assert c.kernel_pid(1) != pid
    assert wait_gone(pid, 5)
    finish(c)


def start_loom_kernel(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A Loom kernel started outside the console, for ``--existing``."""
    path = tmp_path / "runtime" / "kernel-attached.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    env = console_env(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kernel", "-f", str(path)], cwd=ROOT, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 30
    while not (path.exists() and path.stat().st_size and json.loads(path.read_text())):
        assert time.monotonic() < deadline, "the kernel did not write its connection file"
        time.sleep(0.05)
    return proc, path


def test_attached_console_interrupts_by_message_and_leaves_kernel_running(
    tmp_path: Path, console: list[Console]
) -> None:
    kernel, path = start_loom_kernel(tmp_path)
    try:
        c = open_console(console, tmp_path, "--existing", str(path))
        c.expect(prompt_re(1))
        c.run("print('attached', 2 * 21)")
        c.expect("attached 42")
        c.expect(prompt_re(2))
        c.run('exec(\'print("loop" + "ing")\\nwhile True: pass\')')
        c.expect("looping")
        c.child.sendintr()  # sent to the kernel as interrupt_request
        c.expect("KeyboardInterrupt")
        c.expect(prompt_re(3))
        c.child.send("\x04")  # no question: the kernel is not ours
        c.expect("The kernel is still running")
        c.child.expect(pexpect.EOF, timeout=15)
        assert kernel.poll() is None
        assert set(c.thread_counts()) == {1}
        # A second console sees the kernel dying within a few seconds (heartbeat).
        c2 = open_console(console, tmp_path, "--existing")  # newest connection file
        c2.expect(r"In \[")
        c2.expect(r"m3(?:\x1b|\])")  # the number is learnt from the kernel, redrawn in place
        kernel.kill()
        killed = time.monotonic()
        c2.expect("ports are closed: it died", timeout=10)
        assert time.monotonic() - killed < 4.5
    finally:
        kernel.kill()
        kernel.wait()


@pytest.mark.parametrize("kernel", KERNELS)
def test_plain_mode_prints_outputs_without_escape_codes(kernel: str, tmp_path: Path) -> None:
    script = "print(1)\nfor i in range(2):\n    print('row', i)\nprint('done')\n2 + 3\n"
    done = subprocess.run(
        [sys.executable, "-m", "shell", "--kernel", kernel],
        input=script,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=console_env(tmp_path),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1\nrow 0\nrow 1\ndone\n5\n"
    assert "\x1b" not in done.stdout + done.stderr
    counts = re.findall(r"threads=(\d+)", (tmp_path / "threads.log").read_text())
    assert counts
    assert set(counts) == {"1"}


def test_plain_mode_errors_go_to_stderr(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shell"],
        input="print('a')\n1/0\nprint('b')\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=console_env(tmp_path),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout == "a\nb\n"
    assert "ZeroDivisionError" in done.stderr
    assert "\x1b" not in done.stderr


@pytest.mark.parametrize("source", ["kernel", "file"])
def test_history_persists_across_sessions(
    source: str, tmp_path: Path, console: list[Console]
) -> None:
    """Up finds the last session's cell: from the kernel's history (Loom's kernel
    keeps it in LOOM_HISTORY_FILE) with a fresh console file, or from the console's
    own file with a fresh kernel history (ipykernel with a new IPYTHONDIR)."""
    kernel = "loom" if source == "kernel" else "python3"
    first = open_console(console, tmp_path, "--kernel", kernel)
    first.kernel_pid(1)
    first.expect(prompt_re(2))
    first.run("print('persisted' + '-entry')")
    first.expect("persisted-entry")
    finish(first)
    fresh = (
        {"LOOM_CONSOLE_HISTORY": str(tmp_path / "other_console_history")}
        if source == "kernel"
        else {"IPYTHONDIR": str(tmp_path / "other_ipython")}
    )
    second = open_console(console, tmp_path, "--kernel", kernel, **fresh)
    # The kernel's history is merged once the kernel answers (the prompt does not
    # wait for it): run a cell first, which answers after the history request.
    second.kernel_pid(1)
    second.expect(prompt_re(2))
    second.child.send("print('pers")
    second.child.send("\x1b[A")  # Up: prefix search
    second.child.send("\r")
    second.expect("persisted-entry")
    finish(second)


def test_second_ctrl_c_stops_waiting_for_a_wedged_kernel(
    tmp_path: Path, console: list[Console]
) -> None:
    c = open_console(console, tmp_path)
    pid = c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run("import time; print('wait' + 'ing'); time.sleep(30)")
    c.expect("waiting")
    os.kill(pid, signal.SIGSTOP)  # the interrupt cannot be acted on
    try:
        c.child.sendintr()
        # The rule under test is about time: a Ctrl-C a second or more after the
        # first stops waiting. (An earlier one only repeats the interrupt.)
        time.sleep(1.1)
        c.child.sendintr()
        c.expect("Stopped waiting for the cell")
        c.expect(prompt_re(3))
    finally:
        os.kill(pid, signal.SIGCONT)
    # The pending SIGINT now reaches the cell; its traceback arrives while idle.
    c.expect("KeyboardInterrupt", timeout=10)
    c.run("print('usable', 'again')")
    c.expect("usable again")
    finish(c)


@pytest.mark.parametrize("how", ["SIGTERM", "hangup"])
def test_terminated_console_leaves_no_kernel_behind(
    how: str, tmp_path: Path, console: list[Console]
) -> None:
    c = open_console(console, tmp_path)
    pid = c.kernel_pid(1)
    c.expect(prompt_re(2))
    if how == "SIGTERM":
        c.child.kill(signal.SIGTERM)
        c.child.expect(pexpect.EOF, timeout=15)
        c.child.close()
        assert c.child.exitstatus == 128 + signal.SIGTERM
    else:
        # The terminal goes away (its master side closes): the console gets SIGHUP. Not
        # pexpect's close(), which gives the console 0.2 s and then sends it more signals.
        c.child.ptyproc.fileobj.close()
        assert wait_gone(c.child.pid, 15), "the console outlived its terminal"
        c.child.close()  # reaps it
    assert wait_gone(pid, 5), "the kernel outlived its console"
