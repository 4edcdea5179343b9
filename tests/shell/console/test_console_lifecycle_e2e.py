"""Starting, attaching and liveness, end to end (issue 15): real processes, real kernels.

The pty helpers are those of ``test_console_e2e`` (a ``loom`` process in a pty, kernels
killed by PID afterwards).
"""

from __future__ import annotations

import asyncio
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
from test_console_e2e import (
    Console,
    console_env,
    finish,
    open_console,
    out_re,
    prompt_re,
)

from kernel import connect_client
from kernel.protocol import ConnectionInfo

pytestmark = pytest.mark.peer

KERNELS = ["loom", "python3"]


@pytest.fixture
def console() -> Iterator[list[Console]]:
    """Consoles a test opens; closed (and their kernels killed) afterwards."""
    opened: list[Console] = []
    yield opened
    for c in opened:
        c.close()


#: Files named like Loom's packages and a dependency; each would end the process
#: that imports it, which is what a user's ``kernel.py`` did to Loom's kernel.
SHADOWS = ("kernel", "shell", "parallel", "zmq")


def shadowing_dir(tmp_path: Path) -> Path:
    """A working directory holding kernel.py, shell.py, parallel.py and zmq.py (each
    printing ``mine`` and exiting), and a module of the user's own, ``mymod.py``."""
    work = tmp_path / "userdir"
    work.mkdir()
    for name in SHADOWS:
        (work / f"{name}.py").write_text("print('mine')\nraise SystemExit(0)\n")
    (work / "mymod.py").write_text("value = 6 * 7\n")
    return work


def test_console_starts_in_a_directory_shadowing_loom(
    tmp_path: Path, console: list[Console]
) -> None:
    work = shadowing_dir(tmp_path)
    c = open_console(console, tmp_path, cwd=work)  # the default kernel: loom
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run("import mymod; mymod.value")  # the user's own modules are still importable
    c.expect(out_re(2, "42"))
    c.expect(prompt_re(3))
    c.run("%load_ext parallel")  # first imported now, with '' on sys.path: still Loom's
    c.expect(prompt_re(4))
    c.run(
        "import sys; print(sorted(n for n in ('kernel', 'parallel', 'zmq') "
        "if 'user' + 'dir' in sys.modules[n].__file__), 'is' + ' shadowed')"
    )
    c.expect(r"\[\] is shadowed")
    finish(c)


def test_loom_run_in_a_directory_shadowing_loom(tmp_path: Path) -> None:
    work = shadowing_dir(tmp_path)
    (work / "job.py").write_text("import os, mymod\nprint('pid', os.getpid(), mymod.value)\n")
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "shell", "run", "job.py"],
        cwd=work,
        env=console_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "mine" not in out + err
    _, pid, value = out.split()
    assert value == "42"
    assert wait_gone(int(pid), 10), "loom run left its kernel running"


#: A pager and an editor that keep the terminal (and so the console's loop) for 4 s:
#: longer than the heartbeat's grace (2.5 s).
SLOW_PAGER = "python -c 'import sys, time; time.sleep(4); sys.stdout.write(sys.stdin.read())'"
SLOW_EDITOR = (
    "python -c 'import sys, time; time.sleep(4); "
    'open(sys.argv[1], "w").write("print(\\"edit\\" + \\"ed\\", 7)")\''
)


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_pager_or_editor_held_open_is_no_kernel_silence(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    """Issue 15 items 8 and 22: the loop blocked by a pager or %edit for longer than the
    heartbeat's grace must not make a healthy kernel \"not responding\"."""
    c = open_console(
        console, tmp_path, "--kernel", kernel, LOOM_PAGER=SLOW_PAGER, EDITOR=SLOW_EDITOR
    )
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run("def f(): pass")
    c.expect(prompt_re(3))
    c.run("f.__doc__ = chr(10).join('line %d' % n for n in range(100))")
    c.expect(prompt_re(4))
    c.run("f?")
    c.expect("line 99", timeout=30)  # what the pager wrote, once it let go
    c.run("%edit")
    c.expect("edited 7", timeout=30)
    c.run("print('still' + ' here')")
    c.expect("still here")
    c.log.flush()
    assert "not responding" not in (tmp_path / "pty.log").read_text()
    finish(c)


@contextlib.contextmanager
def standalone_kernel(tmp_path: Path, kernel: str, name: str) -> Iterator[tuple[int, Path]]:
    """A kernel started outside the console, as a user does in another terminal, on
    ``RUNTIME/name``; yields its PID and connection file, SIGKILLs it by PID after."""
    path = tmp_path / "runtime" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    module = "kernel" if kernel == "loom" else "ipykernel_launcher"
    ready = tmp_path / f"{name}.out"
    with ready.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", module, "-f", str(path)],
            env=console_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        # Both write the file before they bind; the console's connect waits for the rest.
        deadline = time.monotonic() + 30
        while not (path.exists() and path.stat().st_size and json.loads(path.read_text())):
            assert proc.poll() is None, ready.read_text()
            assert time.monotonic() < deadline, "the kernel did not write its connection file"
            time.sleep(0.05)
        yield proc.pid, path
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("kernel", KERNELS)
def test_attached_by_bare_name_named_truly_and_left_truly(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    """Items 3-5: ``--existing kernel-x.json`` (what ipykernel's banner says) attaches;
    the console calls the kernel by its own name; leaving after the kernel died says so."""
    with standalone_kernel(tmp_path, kernel, "kernel-x.json") as (pid, path):
        c = open_console(console, tmp_path, "--existing", "kernel-x.json")
        own_name = "loom" if kernel == "loom" else "ipython"
        c.expect(rf"kernel {own_name} \(attached to {re.escape(str(path))}\)")
        c.expect(prompt_re(1))
        c.run("print('attached', 6 * 7)")
        c.expect("attached 42")
        c.expect(prompt_re(2))
        os.kill(pid, signal.SIGKILL)
        c.expect("it died", timeout=15)
        c.child.send("\x04")
        c.expect(re.escape(f"The kernel has died; its connection file is stale: rm {path}"))
        c.child.expect(pexpect.EOF, timeout=15)
        c.log.flush()
        assert "still running" not in (tmp_path / "pty.log").read_text()


async def _shut_down(path: Path) -> None:
    async with asyncio.timeout(30), connect_client(ConnectionInfo.read(path)) as client:
        await client.shutdown()


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.parametrize("how", ["Ctrl-C", "SIGTERM", "SIGHUP", "SIGQUIT", "shutdown"])
def test_loom_kernel_stops_and_removes_its_connection_file(how: str, tmp_path: Path) -> None:
    """Item 2: `loom kernel` in a terminal stops on Ctrl-C (and says so as it starts), on
    SIGTERM, SIGHUP, SIGQUIT and a shutdown request, and removes the file it wrote."""
    child = pexpect.spawn(
        sys.executable,
        ["-P", "-m", "shell", "kernel"],
        env=console_env(tmp_path),
        encoding="utf-8",
        timeout=30,
    )
    kernel_pids: list[int] = []
    try:
        child.expect("Ctrl-C stops this kernel")
        child.expect(r"loom --existing (\S+)")
        path = Path(child.match.group(1))
        assert path.is_file()
        kernel_pids = _children(child.pid)
        assert len(kernel_pids) == 1
        if how == "Ctrl-C":
            child.sendintr()
        elif how == "shutdown":
            asyncio.run(_shut_down(path))
        else:
            child.kill(getattr(signal, how))
        child.expect(pexpect.EOF, timeout=15)
        child.close()
        expected = {"Ctrl-C": 128 + signal.SIGINT, "shutdown": 0}.get(how)
        if expected is None:
            expected = 128 + getattr(signal, how)
        assert child.exitstatus == expected, (child.exitstatus, child.signalstatus)
        assert wait_gone(kernel_pids[0], 10)
        assert not path.exists()
    finally:
        child.close(force=True)
        for pid in kernel_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_bare_kernel_in_a_terminal_says_how_to_stop_it(tmp_path: Path) -> None:
    """`python -m kernel` by hand: Ctrl-C interrupts cells, so it names Ctrl-\\ instead,
    which stops it and removes its file."""
    child = pexpect.spawn(
        sys.executable,
        ["-P", "-m", "kernel"],
        env=console_env(tmp_path),
        encoding="utf-8",
        timeout=30,
    )
    try:
        child.expect(r"loom --existing (\S+)")
        path = Path(child.match.group(1))
        child.expect(re.escape(f"press Ctrl-\\ or run: kill {child.pid}"))
        child.sendcontrol("\\")
        child.expect(pexpect.EOF, timeout=15)
        child.close()
        assert child.exitstatus == 128 + signal.SIGQUIT
        assert not path.exists()
    finally:
        child.close(force=True)


def run_plain(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``loom ARGS`` in plain mode (pipes, no terminal)."""
    return subprocess.run(
        [sys.executable, "-P", "-m", "shell", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=console_env(tmp_path),
        timeout=60,
        check=False,
    )


def test_existing_passes_over_stale_files_and_names_a_dead_one_at_once(tmp_path: Path) -> None:
    """Item 2: with no name, `--existing` skips files of gone kernels and says which;
    named, a stale file is reported at once with the command that removes it: "nothing
    listens on its ports" is the refused-connection probe's verdict, given without waiting
    for a heartbeat to time out (no timed assert: a loaded machine stretches any bound)."""
    with standalone_kernel(tmp_path, "loom", "kernel-live.json") as (pid, _):
        with standalone_kernel(tmp_path, "loom", "kernel-dead.json") as (dead_pid, dead):
            os.kill(dead_pid, signal.SIGKILL)  # it leaves its file behind: now the newest
            assert wait_gone(dead_pid, 10)
        done = run_plain(tmp_path, "--existing", stdin="import os; os.getpid()\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(pid)
        assert f"skipped stale connection files (their kernels are gone): {dead}" in done.stderr
        done = run_plain(tmp_path, "--existing", "kernel-dead.json")
        assert done.returncode == 1
        assert f"the kernel of {dead} is gone (nothing listens on its ports)" in done.stderr
        assert f"remove it with: rm {dead}" in done.stderr


#: Ctrl-C at input() is tried this many times in one session, on each kernel.
INPUT_TRIALS = 20


@pytest.mark.parametrize("kernel", KERNELS)
def test_ctrl_c_at_input_raises_at_the_input_line_every_time(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    """Items 7 and 19: Ctrl-C at an input() prompt raises KeyboardInterrupt at the cell's
    input() line, every time: never '' as the answer, never a traceback into zmq or
    hmac, never a prompt that does not come back. Ctrl-C is pressed the moment the
    question shows, so the interrupt often reaches a kernel that is just starting to wait."""
    c = open_console(console, tmp_path, "--kernel", kernel)
    c.kernel_pid(1)
    for trial in range(INPUT_TRIALS):
        count = 2 + trial
        c.expect(prompt_re(count))
        c.run(f"answer = input('question' + ' {trial}? '); print('went' + ' on', repr(answer))")
        c.expect(f"question {trial}\\?")
        c.child.send("\x03")
        c.expect("KeyboardInterrupt", timeout=15)
    c.expect(prompt_re(2 + INPUT_TRIALS), timeout=15)
    c.run("print('after' + ' trials', 'answer' in dir())")
    c.expect("after trials False")  # no input() ever returned
    c.log.flush()
    log = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", (tmp_path / "pty.log").read_text())
    assert "went on" not in log
    assert "zmq" not in log
    assert "hmac" not in log
    # Each traceback points at the cell's own input() line.
    assert log.count("----> 1 answer = input(") == INPUT_TRIALS
    finish(c)


def pause_the_terminal(seconds: float) -> None:
    """Read nothing from the pty for ``seconds``, as a paused tmux pane or a slow link
    does: the console's writes block once the pty's buffer is full."""
    time.sleep(seconds)


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_blocked_terminal_is_no_kernel_silence(
    kernel: str, tmp_path: Path, console: list[Console]
) -> None:
    """Item 22: the console's own output blocked for longer than the heartbeat's grace
    must not make a healthy kernel \"not responding\"."""
    c = open_console(console, tmp_path, "--kernel", kernel)
    c.kernel_pid(1)
    c.expect(prompt_re(2))
    c.run("print(('x' * 99 + chr(10)) * 5000); print('end' + 'marker')")  # 500 kB
    pause_the_terminal(5.0)
    c.expect("endmarker", timeout=60)
    c.expect(prompt_re(3))
    c.run("print('still' + ' here')")
    c.expect("still here")
    c.log.flush()
    assert "not responding" not in (tmp_path / "pty.log").read_text()
    finish(c)
