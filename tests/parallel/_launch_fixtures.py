"""Launchers and helpers for the launcher tests.

``ScriptLauncher`` is a user-defined launcher as docs/parallel.md shows one: a
``parallel.launchers`` subclass named ``"_launch_fixtures:ScriptLauncher"`` (the
controller imports it; ``tests/parallel`` is put on its ``PYTHONPATH``). Its ``script``
runs under ``sh -c`` with ``$ENGINE`` (the command that starts one engine) and ``$N``,
so a test can make a launcher that fails, hangs or starts only some engines.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from _cluster_support import isolate

from kernel.client import wait_pid_exit
from parallel import Cluster
from parallel.launchers import LaunchContext, LaunchError
from parallel.launchers._command import CommandLauncher, engine_argv


class ScriptLauncher(CommandLauncher):
    name = "script"

    def __init__(self, script: str) -> None:
        super().__init__()
        if not isinstance(script, str) or not script.strip():
            raise LaunchError("script must be a non-empty shell command")
        self.script = script

    def command(self, n: int, ctx: LaunchContext) -> tuple[list[str], Mapping[str, str]]:
        env = {**os.environ, "ENGINE": shlex.join(engine_argv(ctx)), "N": str(n)}
        return ["/bin/sh", "-c", self.script], env


TESTS = Path(__file__).resolve().parent


def isolate_launch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As ``isolate``, and the controller can import this module (``ScriptLauncher``)."""
    isolate(monkeypatch, tmp_path)
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{path}" if path else str(TESTS))


def kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def launcher_pid(cluster: Cluster) -> int | None:
    """The launcher command's pid, from its status ("mpiexec pid 123")."""
    status = cluster.launcher_status
    found = re.search(r"\bpid (\d+)", status.summary) if status is not None else None
    return int(found.group(1)) if found else None


@contextlib.contextmanager
def cleaned_up(cluster: Cluster) -> Iterator[set[int]]:
    """Yields a set for pids the test learns; afterwards the cluster is stopped the
    graceful way, then the controller, the launcher and those pids are SIGKILLed."""
    pids: set[int] = set()
    try:
        yield pids
    finally:
        if cluster._process is not None:
            pids.add(cluster._process.pid)
            found = launcher_pid(cluster)
            if found:
                pids.add(found)
        if cluster._client is not None:
            pids |= {record.pid for record in cluster._client._records.values()}
        cluster.stop_cluster_sync()
        for pid in pids:
            kill_pid(pid)


def all_gone(pids: set[int], timeout: float = 20.0) -> list[int]:
    """The pids still running after ``timeout`` seconds (each waited for by pidfd)."""
    deadline = time.monotonic() + timeout
    return [pid for pid in pids if not wait_pid_exit(pid, max(0.0, deadline - time.monotonic()))]
