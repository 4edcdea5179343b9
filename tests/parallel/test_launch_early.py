"""Launchers started before the controller (``Launcher.starts_before_controller``: mpi,
slurm): the controller spawns their command first and binds, writes the cluster file and
sets up its hub meanwhile; engines that start before the file exists wait for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _launch_fixtures import cleaned_up, isolate_launch, kill_pid

from kernel.client import wait_pid_exit
from parallel import Client, Cluster, ClusterUnavailable
from parallel.launchers._node_engine import wait_for_file

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_launch(monkeypatch, tmp_path)


def test_the_launcher_starts_before_the_cluster_file_is_written(tmp_path: Path) -> None:
    marker = tmp_path / "existed"
    script = f'echo "$FILE_EXISTED" > {marker}; exec $ENGINE'
    cluster = Cluster(n=1, engines="_launch_fixtures:EarlyScriptLauncher", script=script)
    with cleaned_up(cluster) as pids:
        rc = cluster.start_and_connect_sync(timeout=60)
        pids |= {record.pid for record in rc._records.values()}
        assert rc[0].apply_sync(lambda: 6 * 7) == 42
        assert cluster.cluster_file is not None
        assert cluster.cluster_file.exists()
    assert marker.read_text().strip() == "no"  # spawned before the controller wrote it


def test_an_engine_started_before_its_controller_waits_for_the_file(tmp_path: Path) -> None:
    path = tmp_path / "runtime" / "early-cluster.json"
    path.parent.mkdir(mode=0o700)
    engine_argv = [sys.executable, "-P", "-m", "parallel.launchers._node_engine", "-f", str(path)]
    engine = subprocess.Popen(engine_argv, start_new_session=True, stderr=subprocess.PIPE)
    controller_argv = [sys.executable, "-P", "-m", "parallel.controller", "--file", str(path)]
    controller: subprocess.Popen[bytes] | None = None
    try:
        assert engine.poll() is None  # started first: its file is not there yet
        controller = subprocess.Popen(
            [*controller_argv, "--transport", "tcp"], start_new_session=True
        )
        assert wait_for_file(str(path), 60), "the controller wrote no cluster file"
        with Client(path, timeout=60) as rc:
            assert rc._pump.pump_until(lambda: len(rc._links) == 1, 60), "no engine registered"
            assert rc[0].apply_sync(os.getpid) == engine.pid
    finally:
        for proc in (engine, controller):
            if proc is not None:
                kill_pid(proc.pid)
                proc.wait(10)
        if engine.stderr is not None:
            engine.stderr.close()


def test_an_engine_whose_file_never_appears_gives_up_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from parallel.launchers import _node_engine

    monkeypatch.setattr(_node_engine, "CLUSTER_FILE_WAIT", 0.3)
    monkeypatch.setattr(sys, "argv", ["_node_engine", "-f", str(tmp_path / "never.json")])
    assert _node_engine.main() == 2


def test_an_early_launcher_that_fails_ends_the_start_with_what_it_printed() -> None:
    cluster = Cluster(
        n=2, engines="_launch_fixtures:EarlyScriptLauncher", script="echo 'no engines here'; exit 4"
    )
    with cleaned_up(cluster), pytest.raises(ClusterUnavailable) as caught:
        cluster.start_and_connect_sync(timeout=60)
    message = str(caught.value)
    assert "the launcher failed" in message or "exited" in message, message
    assert "no engines here" in message


def test_an_address_the_controller_cannot_bind_is_one_line_and_stops_an_early_launcher(
    tmp_path: Path,
) -> None:
    """192.0.2.1 (TEST-NET-1) is no address of this host: bind fails, nothing is sent."""
    pid_file = tmp_path / "launcher.pid"
    script = f"echo $$ > {pid_file}; exec sleep 60"
    spec = {"engines": "_launch_fixtures:EarlyScriptLauncher", "options": {"script": script}}
    argv = [sys.executable, "-P", "-m", "parallel.controller", "-n", "1", "--ip", "192.0.2.1"]
    done = subprocess.run(
        [*argv, "--launcher", json.dumps(spec)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "loom controller: cannot listen on '192.0.2.1': Cannot assign requested address"
        " (addr='tcp://192.0.2.1:*')"
    ]
    launcher = int(pid_file.read_text())  # it was started before the bind
    assert wait_pid_exit(launcher, 10)  # and stopped when the controller gave up
