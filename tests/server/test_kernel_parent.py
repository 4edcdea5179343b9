"""A Loom kernel whose parent dies (a console killed with SIGKILL) exits by itself."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _support import wait_gone

ROOT = Path(__file__).resolve().parents[2]

PARENT = textwrap.dedent(
    """
    import os, subprocess, sys
    env = dict(os.environ, JPY_PARENT_PID=str(os.getpid()))
    kernel = subprocess.Popen(
        [sys.executable, "-m", "kernel", "-f", sys.argv[1]],
        env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    print(kernel.pid, flush=True)
    sys.stdin.read()  # wait to be killed
    """
)


@pytest.mark.timeout(60)
def test_kernel_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        LOOM_HISTORY_FILE=str(tmp_path / "history.sqlite"),
        JUPYTER_RUNTIME_DIR=str(tmp_path),
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "kernel.json")],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    kernel_pid = 0
    try:
        assert parent.stdout is not None
        kernel_pid = int(parent.stdout.readline())
        # The kernel is up once it has written its connection file.
        assert not wait_gone(kernel_pid, 0.5)
        parent.kill()
        parent.wait(10)
        assert wait_gone(kernel_pid, 15), "kernel outlived its killed parent"
    finally:
        parent.kill()
        parent.wait(10)
        for pipe in (parent.stdin, parent.stdout):
            if pipe is not None:
                pipe.close()
        if kernel_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(kernel_pid, signal.SIGKILL)


@pytest.mark.timeout(60)
def test_kernel_whose_parent_is_gone_before_it_starts_exits_by_itself(tmp_path: Path) -> None:
    # A pid that was a process and is no more: an engine whose controller died while the
    # engine was still starting (it must not run on forever with nobody to stop it).
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        LOOM_HISTORY_FILE=str(tmp_path / "history.sqlite"),
        JUPYTER_RUNTIME_DIR=str(tmp_path),
        JPY_PARENT_PID=str(gone.pid),
    )
    kernel = subprocess.Popen(
        [sys.executable, "-m", "kernel", "-f", str(tmp_path / "kernel.json")],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        kernel.wait(30)  # before the fix: it served until killed
    finally:
        if kernel.poll() is None:
            kernel.kill()
            kernel.wait(10)
