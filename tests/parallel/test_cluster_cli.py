"""``loom cluster start|list|stop`` as a user runs them, as real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import is_gone, wait_gone

import parallel as ipp

TIMEOUT = 90


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(directory))
    monkeypatch.setenv("LOOM_HISTORY_FILE", str(tmp_path / "history.sqlite"))
    yield directory
    for path in directory.glob("loom-cluster-*.json"):  # whatever a failed test left
        pid = json.loads(path.read_text())["pid"]
        if not is_gone(pid):
            os.killpg(pid, signal.SIGKILL)


def loom(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shell", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def test_start_list_use_and_stop_a_background_cluster(runtime: Path) -> None:
    started = loom("cluster", "start", "-n", "2")
    assert started.returncode == 0, started.stderr
    assert "Cluster started with 2 engines" in started.stdout
    [path] = runtime.glob("loom-cluster-*.json")
    listed = loom("cluster", "list")
    assert listed.returncode == 0
    assert "2 engines" in listed.stdout
    engine_pids = [int(pid) for pid in re.findall(r"engine \d+  pid (\d+)", listed.stdout)]
    assert len(engine_pids) == 2
    controller_pid = json.loads(path.read_text())["pid"]
    with ipp.Client() as rc:  # no argument: the newest cluster
        assert rc[:].apply_sync(lambda: "up") == ["up", "up"]
    stopped = loom("cluster", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout
    assert not path.exists()
    for pid in [controller_pid, *engine_pids]:
        assert wait_gone(pid, 10)
    assert "no clusters are running" in loom("cluster", "list").stdout


def test_a_killed_controller_is_reported_and_stop_ends_its_engines(runtime: Path) -> None:
    assert loom("cluster", "start", "-n", "1").returncode == 0
    [path] = runtime.glob("loom-cluster-*.json")
    listed = loom("cluster", "list").stdout
    [engine_pid] = [int(p) for p in re.findall(r"engine \d+  pid (\d+)", listed)]
    controller_pid = json.loads(path.read_text())["pid"]
    os.kill(controller_pid, signal.SIGKILL)
    assert wait_gone(controller_pid, 10)
    # The engine outlives its controller for a grace period, so that a restore finds it.
    assert not wait_gone(engine_pid, 0.5)
    listed = loom("cluster", "list").stdout
    assert "is gone (stale file" in listed
    assert "loom cluster start --restore" in listed
    stopped = loom("cluster", "stop", str(path))
    assert stopped.returncode == 0
    assert "was already gone" in stopped.stdout
    assert wait_gone(engine_pid, 10)  # stop ended it, by pid
    assert not path.exists()
    assert not path.with_suffix(".db").exists()


def test_stop_without_a_cluster_says_so_in_one_line(runtime: Path) -> None:
    stopped = loom("cluster", "stop")
    assert stopped.returncode == 1
    assert stopped.stderr.count("\n") == 1
    assert "no running cluster" in stopped.stderr


def test_the_record_options_are_the_same_for_every_command() -> None:
    """``--no-db`` and ``--durability`` come from one definition (``_record_options``):
    the controller's own command line and ``loom cluster start`` / ``loom controller``
    take the same values and refuse the same wrong one in one line."""
    import argparse

    from parallel.cluster._cli import add_cluster_arguments
    from parallel.controller._controller import main

    parsers = {name: argparse.ArgumentParser(prog=name) for name in ("cluster", "ctl", "engine")}
    add_cluster_arguments(parsers["cluster"], parsers["ctl"], parsers["engine"])
    for argv, parser in (
        (["start", "--no-db", "--durability", "sync"], parsers["cluster"]),
        (["--no-db", "--durability", "sync"], parsers["ctl"]),
    ):
        args = parser.parse_args(argv)
        assert (args.no_db, args.durability) == (True, "sync")
    for command in (["cluster", "start"], ["controller"]):
        done = loom(*command, "--durability", "later")
        assert done.returncode == 2
        assert "--durability: invalid choice: 'later' (choose from 'async', 'sync')" in done.stderr
    with pytest.raises(SystemExit) as stopped:
        main(["--durability", "later"])
    assert stopped.value.code == 2
