"""The real ``jupyter console --kernel loom``, driven through a pty with pexpect.

jupyter console starts the kernel from the ``loom`` kernelspec (installed by the
session fixture in ``conftest.py``), so this checks the whole path a user takes:
execute, tab completion, ``input()`` answered at the console, and a clean exit that
takes the kernel process down with it.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
from pathlib import Path

import pytest

pytest.importorskip("jupyter_console")
pexpect = pytest.importorskip("pexpect")

pytestmark = pytest.mark.peer

TIMEOUT = 30

#: Any run of terminal escape sequences (prompt_toolkit colours every token).
ESC = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


def prompt(kind: str, number: int) -> str:
    """A regex for ``In [n]:`` or ``Out[n]:`` with the colours it is drawn in."""
    return rf"{kind}\[{ESC}{number}{ESC}\]:"


def wait_gone(pid: int, timeout: float) -> bool:
    """True once process ``pid`` has exited (waits on a pidfd, no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


def child_pids(pid: int) -> set[int]:
    """The direct children of process ``pid`` (Linux ``/proc``); empty if it is gone."""
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def test_console_session(tmp_path: Path) -> None:
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent))
    assert jupyter is not None, "the jupyter command is not installed next to this python"
    env = {
        **os.environ,
        "TERM": "xterm",
        # No cursor-position request: a pty behind pexpect never answers one.
        "PROMPT_TOOLKIT_NO_CPR": "1",
    }
    child = pexpect.spawn(
        jupyter,
        ["console", "--kernel", "loom"],
        env=env,
        cwd=str(tmp_path),
        dimensions=(24, 100),
        encoding="utf-8",
        timeout=TIMEOUT,
    )
    kernel_pid = None
    try:
        child.expect(prompt("In ", 1))
        child.sendline("import os; print('kernel pid', os.getpid())")
        child.expect(r"kernel pid (\d+)\r\n")
        kernel_pid = int(child.match.group(1))
        assert kernel_pid in child_pids(child.pid)  # the kernel this console started

        child.expect(prompt("In ", 2))
        child.sendline("print('answer:', 6*7)")
        child.expect(r"answer: 42\r\n")

        # Tab completion: the only match for "impo" is inserted in place (drawn either as a
        # redrawn line or as just "rt", so allow escapes anywhere); the cell only runs if it
        # really reads "import".
        child.expect(prompt("In ", 3))
        child.send("impo\t")
        child.expect(ESC.join("import"))
        child.sendline(" sys; sys.version_info[0]")
        child.expect(prompt("Out", 3) + rf" {ESC}3\r\n")

        # input(): the kernel's input_request is answered at the console.
        child.expect(prompt("In ", 4))
        child.sendline("x = input('name? ')")
        child.expect(rf"\n{ESC}name\? ")  # at a line start: not the echo of the code
        child.sendline("bob")
        child.expect(prompt("In ", 5))
        child.sendline("print('got', x)")
        child.expect(r"got bob\r\n")

        child.expect(prompt("In ", 6))
        child.sendcontrol("d")
        child.expect(r"Do you really want to exit \(\[y\]/n\)\?")
        child.sendline("y")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, child.before
        assert wait_gone(kernel_pid, TIMEOUT), "the kernel outlived jupyter console"
    finally:
        # Only processes this test started: the console and the kernel it launched.
        leftovers = child_pids(child.pid) | ({kernel_pid} if kernel_pid else set())
        if child.isalive():
            child.terminate(force=True)
        for pid in leftovers:
            if not wait_gone(pid, 0):
                os.kill(pid, signal.SIGKILL)
