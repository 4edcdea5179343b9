"""Starting and attaching, end to end (issue 15, items 1-6): real processes, real kernels.

The pty helpers are those of ``test_console_e2e`` (a ``loom`` process in a pty, kernels
killed by PID afterwards).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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

pytestmark = pytest.mark.peer


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
