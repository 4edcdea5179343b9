"""Healing that goes on past a restore, and a setup replay that hangs (issue 13); real
processes, every one killed by PID at the end.

One cluster for the module (``setup_timeout=2``): first a load-balanced task whose engine
is SIGKILLed fails saying once which engine died and how; then a replacement whose setup
never answers is announced anyway, with a timeout error; then its controller is SIGKILLed and
restored, the restored controller has the recorded setup, replaces an engine that dies
(same id, the setup replayed), and ``loom cluster stop`` leaves no process behind: not
the controllers, not either fork server, not an engine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cluster_support import READ_MARKER, WAIT_WHILE_FLAG, isolate
from _support import wait_gone

from parallel import Client, Cluster, EngineError

pytestmark = pytest.mark.timeout(120)

SETUP_TIMEOUT = 2.0


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _processes_of(path: Path) -> set[int]:
    """Processes whose command line names the cluster file (controllers, fork servers,
    engines)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(path).encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
    return found


def _back(rc: Client, engine: int, old_pid: int, timeout: float = 30.0) -> bool:
    """Whether ``engine`` is announced again, as a new process, within ``timeout``."""

    def replaced() -> bool:
        record = rc._records.get(engine)
        return record is not None and record.pid != old_pid

    return rc._pump.pump_until(replaced, timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Client, set[int]]]:
    pids: set[int] = set()
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, tmp_path_factory.mktemp("restore-healing"))
        started = Cluster(n=2, setup_timeout=SETUP_TIMEOUT)
        try:
            with started.start_and_connect_sync(timeout=60) as rc:
                assert started.cluster_file is not None
                pids |= _processes_of(started.cluster_file)
                yield started, rc, pids
        finally:
            started.stop_cluster_sync()
            for pid in pids:
                _kill(pid)


def test_a_load_balanced_task_whose_engine_dies_says_so_once(
    cluster: tuple[Cluster, Client, set[int]], tmp_path: Path
) -> None:
    _, rc, pids = cluster
    flag = tmp_path / "running"
    flag.touch()
    task = rc.load_balanced_view([0]).apply_async(WAIT_WHILE_FLAG, str(flag))
    old = rc._records[0].pid
    deadline = time.monotonic() + 20
    while not rc.db_query({"task_id": task.msg_ids[0]}, keys=["msg_id"]):  # it runs
        assert time.monotonic() < deadline, "the task never started"
    os.kill(old, signal.SIGKILL)
    with pytest.raises(EngineError) as died:
        task.get(timeout=20)
    said = str(died.value)
    assert said.endswith(
        f"engine 0 died while running task {task.msg_ids[0]!r}: killed by signal 9 (SIGKILL);"
        " it is being restarted"
    ), said
    assert said.count("died") == 1, said
    assert _back(rc, 0, old)
    pids.add(rc._records[0].pid)


def test_a_setup_replay_that_hangs_announces_the_engine_with_a_timeout(
    cluster: tuple[Cluster, Client, set[int]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _, rc, pids = cluster
    armed, go = tmp_path / "armed", tmp_path / "go"
    hold = (
        "import os, time\n"
        f"while os.path.exists({str(armed)!r}) and not os.path.exists({str(go)!r}):\n"
        "    time.sleep(0.01)"
    )
    rc[1].setup(hold).get(timeout=20)  # not armed: returns at once
    armed.touch()
    old = rc._records[1].pid
    killed = time.monotonic()
    os.kill(old, signal.SIGKILL)
    # Without the timeout the replacement stayed "joining" for as long as the setup ran.
    assert _back(rc, 1, old), "the replacement was never announced"
    assert time.monotonic() - killed >= SETUP_TIMEOUT
    pids.add(rc._records[1].pid)
    said = capsys.readouterr().err
    assert "engine 1 restarted after it died: killed by signal 9 (SIGKILL), but its setup" in said
    assert f"failed: SetupTimeout: no reply after {SETUP_TIMEOUT:g} s (--setup-timeout)" in said
    go.touch()  # the stuck item ends; the engine then takes work
    assert rc[1].apply_sync(pow, 2, 5) == 32
    rc.clear_setup()


def test_a_restored_controller_keeps_the_setup_and_replaces_dead_engines(
    cluster: tuple[Cluster, Client, set[int]],
) -> None:
    first, rc, pids = cluster
    path = first.cluster_file
    assert path is not None
    assert first._process is not None
    rc[:].setup("marker = 42").get(timeout=20)
    with Client(path) as other:
        recorded = other.recorded_setup
    assert [item["summary"] for item in recorded] == ["marker = 42"]
    pids |= _processes_of(path)
    _kill(first._process.pid)
    assert wait_gone(first._process.pid, 10)

    restored = Cluster(restore=path)
    try:
        rc2 = restored.restore_sync(timeout=15)
        assert restored._process is not None
        pids |= _processes_of(path)
        assert rc2.ids == [0, 1]
        # The setup recorded before the crash is the restored controller's.
        assert rc2.recorded_setup == recorded
        # An engine that dies now is replaced: same id, a new process, its setup replayed.
        old = rc2._records[0].pid
        os.kill(old, signal.SIGKILL)
        assert _back(rc2, 0, old), "the restored controller did not replace engine 0"
        assert rc2.restarts[0].count == 1
        assert rc2[0].apply_sync(READ_MARKER) == 42
        assert rc2[0].apply_sync(os.getpid) == rc2._records[0].pid != old
        pids |= _processes_of(path)  # the restored controller's fork server, its engine
        rc2.close()
        stopped = subprocess.run(
            [sys.executable, "-m", "shell", "cluster", "stop", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert stopped.returncode == 0, stopped.stderr
        for pid in pids:  # the controllers, both fork servers, every engine
            assert wait_gone(pid, 15), f"pid {pid} outlived loom cluster stop"
        assert not path.exists()
        assert not path.with_suffix(".db").exists()
    finally:
        restored.stop_cluster_sync()
