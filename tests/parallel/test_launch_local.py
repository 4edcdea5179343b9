"""The launcher interface: the local engines, a user-defined launcher, and launchers that
fail, hang or start only some engines (each start ends within its timeout, saying which
engines came up and what the launcher printed, and leaves no process behind)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _launch_fixtures import (
    all_gone,
    cleaned_up,
    isolate_launch,
    kill_pid,
    launcher_pid,
    secrets_exposed,
)

from parallel import Cluster, ClusterUnavailable

SCRIPT = "_launch_fixtures:ScriptLauncher"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_launch(monkeypatch, tmp_path)


def test_local_engines_are_the_default_launcher_and_report_their_processes() -> None:
    cluster = Cluster(n=2)
    assert (cluster.engines, cluster.transport) == ("local", "ipc")
    with cleaned_up(cluster) as pids:
        rc = cluster.start_and_connect_sync(timeout=60)
        engine_pids = {record.pid for record in rc._records.values()}
        pids |= engine_pids
        status = cluster.launcher_status
        assert status is not None
        assert status.state == "running"
        assert all(str(pid) in status.summary for pid in engine_pids)
        assert secrets_exposed(rc.info) == []  # the fork server got the file's path
    assert all_gone(engine_pids) == []


def test_a_user_defined_launcher_starts_engines_and_stop_leaves_nothing() -> None:
    cluster = Cluster(n=2, engines=SCRIPT, script="$ENGINE & $ENGINE & wait")
    assert cluster.transport == "tcp"  # the default for any launcher but local
    with cleaned_up(cluster) as pids:
        rc = cluster.start_and_connect_sync(timeout=60)
        assert rc.ids == [0, 1]
        assert sorted(rc[:].apply_sync(lambda: 6 * 7)) == [42, 42]
        pids |= {record.pid for record in rc._records.values()}
        sh = launcher_pid(cluster)
        assert sh is not None
        pids.add(sh)
        cluster.stop_cluster_sync()
        assert all_gone(pids) == []


def test_a_launcher_that_fails_ends_the_start_at_once_with_what_it_printed() -> None:
    cluster = Cluster(n=2, engines=SCRIPT, script="echo \"qsub: no queue named 'gpu'\" >&2; exit 3")
    started = time.monotonic()
    with cleaned_up(cluster), pytest.raises(ClusterUnavailable) as caught:
        cluster.start_and_connect_sync(timeout=60)
    assert time.monotonic() - started < 30  # not the 60 s timeout
    message = str(caught.value)
    assert "0 of 2 engines registered (none is up): the launcher failed" in message
    assert "exited with code 3" in message
    assert "qsub: no queue named 'gpu'" in message
    assert cluster._process is None  # everything stopped


def test_a_launcher_that_cannot_run_says_so() -> None:
    cluster = Cluster(n=1, engines=SCRIPT, script="exec /nonexistent/qsub")
    with cleaned_up(cluster), pytest.raises(ClusterUnavailable, match="nonexistent/qsub"):
        cluster.start_and_connect_sync(timeout=60)


def test_a_launcher_that_hangs_ends_at_the_timeout_with_what_it_printed() -> None:
    cluster = Cluster(n=2, engines=SCRIPT, script='echo "waiting for 2 nodes"; exec sleep 600')
    with cleaned_up(cluster) as pids:
        cluster.start_cluster_sync(timeout=60)
        sleeper = launcher_pid(cluster)
        assert sleeper is not None
        pids.add(sleeper)
        started = time.monotonic()
        with pytest.raises(ClusterUnavailable) as caught:
            cluster.wait_for_engines(timeout=3)
        assert time.monotonic() - started < 10
        message = str(caught.value)
        assert "0 of 2 engines registered (none is up): the wait ended after 3 s" in message
        assert "waiting for 2 nodes" in message
        cluster.stop_cluster_sync()
        assert all_gone({sleeper}) == []


def test_a_launcher_that_starts_k_of_n_engines_names_the_ones_that_came_up() -> None:
    cluster = Cluster(n=2, engines=SCRIPT, script='echo "1 node of 2 granted"; $ENGINE & wait')
    with cleaned_up(cluster) as pids:
        cluster.start_cluster_sync(timeout=60)
        rc = cluster.wait_for_engines(1, timeout=60)
        pids |= {record.pid for record in rc._records.values()}
        with pytest.raises(ClusterUnavailable) as caught:
            cluster.wait_for_engines(timeout=2)
        message = str(caught.value)
        assert "1 of 2 engines registered (engine 0 is up): the wait ended after 2 s" in message
        assert "1 node of 2 granted" in message
        assert rc[0].apply_sync(lambda: "still serving") == "still serving"
        cluster.stop_cluster_sync()
        assert all_gone(pids) == []


def test_a_launcher_with_a_bug_is_reported_and_what_it_started_is_stopped() -> None:
    cluster = Cluster(n=2, engines="_launch_fixtures:BrokenLauncher")
    with cleaned_up(cluster), pytest.raises(ClusterUnavailable) as caught:
        cluster.start_cluster_sync(timeout=60)
    message = str(caught.value)
    assert "the controller exited before serving" in message
    found = re.search(r"KeyError: 'a bug, after starting pid (\d+)'", message)
    assert found is not None, message
    left = all_gone({int(found.group(1))})  # the controller stopped it
    for pid in left:
        kill_pid(pid)
    assert left == []


@pytest.mark.parametrize(
    ("engines", "options", "expected"),
    [
        ("pbs", {}, "engines='pbs': use one of 'local', 'mpi', 'slurm', 'srun', 'ssh'"),
        ("local", {"controller": "job"}, "controller='job' needs engines='slurm'"),
        ("nosuchmodule:Launcher", {}, "cannot import it"),
        (None, {}, "engines must be a launcher's name, not None"),
        ("os:path", {}, "is not a parallel.launchers.Launcher subclass"),
        ("local", {"hosts": {"a": 1}}, "unexpected keyword argument 'hosts'"),
        (SCRIPT, {"script": ""}, "script must be a non-empty shell command"),
        (SCRIPT, {"script": object()}, "script must be a non-empty shell command"),
    ],
)
def test_bad_launcher_input_is_one_clear_line(
    engines: str | None, options: dict[str, object], expected: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)) as caught:
        Cluster(n=1, engines=engines, **options)
    assert "\n" not in str(caught.value)


def test_cli_start_with_a_bad_launcher_is_one_line_on_stderr() -> None:
    done = subprocess.run(
        [sys.executable, "-P", "-m", "shell.cli", "cluster", "start", "-n", "1",
         "--engines", "local", "-o", "nosuch=1"],
        capture_output=True, text=True, timeout=60, env=os.environ,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("loom cluster start: engines='local': ")
    assert "nosuch" in done.stderr
    assert done.stderr.count("\n") == 1
