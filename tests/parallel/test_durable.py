"""Results that survive (issue 13): records, restore, controller lost; real processes.

Each test kills a controller with SIGKILL by its PID and checks what a user sees: a new
client after ``--restore`` gets every finished result by id, a task that was running
when the controller and its engine died is failed with a reason and can be resubmitted,
engines re-attach with their namespace, a waiting client hears "controller lost"
within 10 s, ``db=False`` keeps no file, engines exit after their grace when no
controller returns, and ``durability="sync"`` has the record before the reply.
"""

from __future__ import annotations

import contextlib
import json
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

from parallel import Client, Cluster, ControllerLost, RemoteError
from parallel.controller._db import INFLIGHT_REASON

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def _pids_killed_after(pids: set[int]) -> Iterator[set[int]]:
    try:
        yield pids
    finally:
        for pid in pids:
            _kill(pid)


def test_restore_after_sigkill_gives_every_result_and_fails_the_running_task(
    tmp_path: Path,
) -> None:
    first = Cluster(n=2)
    with _pids_killed_after(set()) as pids:
        rc = first.start_and_connect_sync(timeout=60)
        assert first._process is not None
        assert first.cluster_file is not None
        controller = first._process.pid
        pids |= {controller} | {r.pid for r in rc._records.values()}
        path = first.cluster_file
        rc[:].execute("marker = 42", block=True)
        lview = rc.load_balanced_view()
        balanced = [lview.apply_async(pow, i, 2) for i in range(20)]
        direct = [rc[i % 2].apply_async(pow, i, 3) for i in range(6)]
        expected = {ar.msg_ids[0]: i * i for i, ar in enumerate(balanced)}
        expected |= {ar.msg_ids[0]: i**3 for i, ar in enumerate(direct)}
        for ar in balanced + direct:
            ar.get(timeout=30)
        flag = tmp_path / "running"
        flag.write_text("")
        running = rc[1].apply_async(WAIT_WHILE_FLAG, str(flag))
        running_id = running.msg_ids[0]
        # The controller has the task's record once it started (and every result).
        deadline = time.monotonic() + 20
        while not rc.db_query({"msg_id": running_id}, keys=["status"]):
            assert time.monotonic() < deadline, "the running task was never recorded"
        while set(rc.result_status(list(expected))["completed"]) != set(expected):
            assert time.monotonic() < deadline, "the results were never all recorded"
        # The controller dies, and so does the engine running the task. The controller
        # first: killed second, it could see the engine's death first (a loaded machine
        # runs it between the two kills) and fail the task with EngineError itself.
        _kill(controller)
        _kill(rc._records[1].pid)
        started = time.monotonic()
        with pytest.raises(ControllerLost, match="controller lost"):
            rc.wait_for_engines(5, timeout=-1)  # would wait forever without the watch
        assert time.monotonic() - started < 10

        restored = Cluster(restore=path)
        try:
            started = time.monotonic()
            restored.start_cluster_sync(0)
            assert restored._process is not None
            pids.add(restored._process.pid)
            rc2 = Client(path)
            rc2.wait_for_engines(1, timeout=10)
            assert time.monotonic() - started < 10
            assert rc2.ids == [0]
            assert rc2[0].apply_sync(READ_MARKER) == 42  # the namespace survived
            # 100% of the finished results, by id, to a client that never sent them.
            got = {msg_id: rc2.get_result(msg_id).get(timeout=10) for msg_id in expected}
            assert got == expected
            assert rc2.get_result(list(expected)).get(timeout=10) == list(expected.values())
            records = rc2.db_query(
                {"msg_id": {"$in": list(expected)}}, keys=["msg_id", "completed", "engine_id"]
            )
            assert len(records) == len(direct)  # by msg_id: the balanced ones are task ids
            assert all(r["completed"] is not None for r in records)
            # The task that was running is failed with the reason, not silently lost.
            with pytest.raises(RemoteError) as failure:
                rc2.get_result(running_id).get(timeout=10)
            assert failure.value.ename == "ControllerRestarted"
            assert INFLIGHT_REASON in str(failure.value.evalue)
            assert rc2.result_status([running_id])["completed"] == [running_id]
            flag.unlink()
            assert rc2.resubmit(running_id).get(timeout=30) == "done"
            rc2.close()
            engine0 = rc._records[0].pid
        finally:
            restored.stop_cluster_sync()
        # The restored controller stopped the engine that re-attached: nothing left.
        assert wait_gone(engine0, 15)
        first.stop_cluster_sync()
        assert not path.exists()
        assert not path.with_suffix(".db").exists()


def test_no_db_keeps_nothing_on_disk_and_engines_exit_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOM_CONTROLLER_GRACE", "1")
    monkeypatch.setenv("LOOM_RECORD_RESULT_LIMIT", "10000")
    cluster = Cluster(n=1, db=False)
    with _pids_killed_after(set()) as pids:
        rc = cluster.start_and_connect_sync(timeout=60)
        assert cluster._process is not None
        assert cluster.cluster_file is not None
        engine = rc._records[0].pid
        pids |= {cluster._process.pid, engine}
        ar = rc[0].apply_async(pow, 3, 4)
        assert ar.get(timeout=30) == 81
        other = Client(cluster.cluster_file)
        deadline = time.monotonic() + 20
        while other.result_status(ar.msg_ids)["completed"] != ar.msg_ids:
            assert time.monotonic() < deadline
        assert other.get_result(ar.msg_ids[0]).get(timeout=10) == 81  # from memory
        big = rc[0].apply_async(bytes, 50_000)  # a result over the record limit
        assert big.get(timeout=30) == bytes(50_000)  # the client that sent it gets it
        while other.result_status(big.msg_ids)["completed"] != big.msg_ids:
            assert time.monotonic() < deadline
        with pytest.raises(RemoteError, match="larger than the controller records"):
            other.get_result(big.msg_ids[0]).get(timeout=10)
        other.close()
        assert not cluster.cluster_file.with_suffix(".db").exists()
        _kill(cluster._process.pid)
        # Silent for 3 s, then past the 1 s grace: the engine ends by itself.
        assert wait_gone(engine, 20), "the engine outlived its grace"
        cluster.stop_cluster_sync()
        leftovers = list(cluster.cluster_file.parent.iterdir())
        assert leftovers == [], leftovers  # its file, records, engines file, launcher's dir


def test_sync_durability_records_before_the_reply() -> None:
    cluster = Cluster(n=1, durability="sync")
    with _pids_killed_after(set()) as pids:
        rc = cluster.start_and_connect_sync(timeout=60)
        assert cluster._process is not None
        assert cluster.cluster_file is not None
        pids |= {cluster._process.pid} | {r.pid for r in rc._records.values()}
        other = Client(cluster.cluster_file)
        for i in range(5):
            ar = rc[0].apply_async(pow, i, 2)
            assert ar.get(timeout=30) == i * i
            # No wait: the reply came after the commit, so the record is there.
            assert other.result_status(ar.msg_ids)["completed"] == ar.msg_ids
        other.close()
        cluster.stop_cluster_sync()


# The client links to the re-registered engine afresh while the engine's reply numbers
# go on (H3's gap check): the running task's reply went to the closed link, so the check
# reports a gap. Reported to its author; not what this test is about.
@pytest.mark.filterwarnings("ignore:engine 0.*a gap in its reply numbers:RuntimeWarning")
def test_an_engine_the_hub_declared_lost_registers_again_with_its_id_and_namespace(
    tmp_path: Path,
) -> None:
    # A network partition as the hub sees it: the engine's heartbeat goes silent (here:
    # SIGSTOP), the hub declares it lost; when it answers again, its next ping is told
    # "register again", and it comes back as engine 0 with its namespace.
    cluster = Cluster(n=1, restart_engines=False)
    with _pids_killed_after(set()) as pids:
        rc = cluster.start_and_connect_sync(timeout=60)
        assert cluster._process is not None
        engine = rc._records[0].pid
        pids |= {cluster._process.pid, engine}
        rc[0].execute("marker = 42", block=True)
        flag = tmp_path / "running"
        flag.write_text("")
        running = rc[0].apply_async(WAIT_WHILE_FLAG, str(flag))
        running_id = running.msg_ids[0]
        deadline = time.monotonic() + 20
        while not rc.db_query({"msg_id": running_id}, keys=["status"]):
            assert time.monotonic() < deadline, "the running task was never recorded"
        os.kill(engine, signal.SIGSTOP)
        try:
            assert rc._pump.pump_until(lambda: 0 not in rc._links, 20), "never declared lost"
            # Its running task is failed in the records too, with the loss's reason.
            with pytest.raises(RemoteError) as lost, Client(cluster.cluster_file) as other:
                other.get_result(running_id).get(timeout=10)
            assert lost.value.ename == "EngineError"
            assert "engine 0" in lost.value.evalue
        finally:
            os.kill(engine, signal.SIGCONT)
        started = time.monotonic()
        rc.wait_for_engines(1, timeout=15)
        assert time.monotonic() - started < 10
        assert rc.ids == [0]
        assert rc._records[0].pid == engine  # the same process, not a replacement
        # The task ran on: its late result replaces the failure in the records.
        flag.unlink()
        assert rc[0].apply_sync(READ_MARKER) == 42  # after that task, in the same namespace
        with Client(cluster.cluster_file) as other:
            deadline = time.monotonic() + 20
            while other.db_query({"msg_id": running_id}, keys=["status"])[0]["status"] != "ok":
                assert time.monotonic() < deadline, "the late result was never recorded"
            assert other.get_result(running_id).get(timeout=10) == "done"
        cluster.stop_cluster_sync()


def test_a_supervised_cluster_restarts_its_dead_controller_with_restore() -> None:
    cluster = Cluster(n=1, supervise=True)
    with _pids_killed_after(set()) as pids:
        rc = cluster.start_and_connect_sync(timeout=60)
        assert cluster._process is not None
        first = cluster._process.pid
        pids |= {first, rc._records[0].pid}
        ar = rc[0].apply_async(pow, 2, 10)
        assert ar.get(timeout=30) == 1024
        deadline = time.monotonic() + 20
        while not rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["status"]):
            assert time.monotonic() < deadline
        _kill(first)
        started = time.monotonic()
        # A wait notices the exit and restarts the controller: no ControllerLost.
        assert rc.get_result(ar.msg_ids[0]).get(timeout=15) == 1024
        assert cluster.revived == 1
        assert cluster._process is not None
        pids.add(cluster._process.pid)
        assert cluster._process.pid != first
        assert rc._pump.pump_until(lambda: rc._controller._unanswered is None, 10)
        assert time.monotonic() - started < 10
        assert rc[0].apply_sync(pow, 3, 2) == 9
        cluster.stop_cluster_sync()


def _processes_of(path: Path) -> list[int]:
    """Processes whose command line names the cluster file (controller, fork server,
    engines)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if str(path).encode() in argv:
                    found.append(int(entry.name))
    return found


def test_loom_cluster_start_restore_then_stop_leaves_nothing(tmp_path: Path) -> None:
    def loom(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shell", *args],
            capture_output=True,
            text=True,
            timeout=90,
            stdin=subprocess.DEVNULL,
        )

    runtime = tmp_path / "runtime"
    with _pids_killed_after(set()) as pids:
        started = loom("cluster", "start", "-n", "2")
        assert started.returncode == 0, started.stderr
        [path] = runtime.glob("loom-cluster-*.json")
        pids |= set(_processes_of(path))
        with Client(path) as rc:
            rc[:].execute("marker = 42", block=True)
            done = rc[0].apply_async(pow, 5, 2)
            assert done.get(timeout=30) == 25
            deadline = time.monotonic() + 20
            while not rc.db_query({"msg_id": done.msg_ids[0], "status": "ok"}, keys=["msg_id"]):
                assert time.monotonic() < deadline
        _kill(json.loads(path.read_text())["pid"])
        restored = loom("cluster", "start", "--restore", str(path))
        assert restored.returncode == 0, restored.stderr
        assert "restored; 2 engines re-attached" in restored.stdout
        pids |= set(_processes_of(path))
        with Client(path) as rc:
            assert rc[:].apply_sync(READ_MARKER) == [42, 42]
            assert rc.get_result(done.msg_ids[0]).get(timeout=10) == 25
        stopped = loom("cluster", "stop", str(path))
        assert stopped.returncode == 0, stopped.stderr
        for pid in pids:  # the controllers, the first one's fork server, the engines
            assert wait_gone(pid, 15), f"pid {pid} outlived the cluster"
        assert not path.exists()
        assert not path.with_suffix(".db").exists()


def test_restore_without_a_cluster_file_is_one_line(tmp_path: Path) -> None:
    for argv in (
        ["-m", "shell", "cluster", "start", "--restore", str(tmp_path / "none.json")],
        ["-P", "-m", "parallel.controller", "--restore", "--file", str(tmp_path / "none.json")],
    ):
        done = subprocess.run(
            [sys.executable, *argv], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert done.returncode in (1, 2), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert "cannot read cluster file" in done.stderr
        assert "Traceback" not in done.stderr
