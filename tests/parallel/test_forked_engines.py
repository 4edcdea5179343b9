"""The ``local`` launcher forks its engines from one fork server (``parallel.engine._forkserver``):
one process imports what engines need, each engine is a fork of it in a session of its
own. Deaths are reported with their cause, and stopping leaves no process behind, even
an engine that ignores SIGTERM."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from _cluster_support import isolate, running_cluster

import parallel as ipp
from kernel.client import wait_pid_exit

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def test_engines_are_forked_by_one_server_each_in_its_own_session() -> None:
    with running_cluster(3) as (cluster, rc):
        pids = rc[:].apply_sync(os.getpid)
        assert sorted(pids) == sorted(record.pid for record in rc._records.values())
        servers = {_parent(pid) for pid in pids}
        assert len(servers) == 1
        (server,) = servers
        assert cluster._process is not None
        assert server != cluster._process.pid
        assert _parent(server) == cluster._process.pid
        assert all(os.getsid(pid) == pid for pid in pids)
        # The server imported the engines' modules before forking: a task finds them loaded.
        assert rc[0].apply_sync(lambda: "cloudpickle" in __import__("sys").modules)
        # ... with collection off, then froze what they made (out of the way of the
        # engines' collections, and of their shared pages) and collection is on again.
        gc_state = rc[:].apply_sync(
            lambda: (__import__("gc").isenabled(), __import__("gc").get_freeze_count() > 0)
        )
        assert gc_state == [(True, True)] * 3


def test_a_killed_engine_is_reported_with_its_signal_and_stop_leaves_nothing() -> None:
    with running_cluster(2) as (cluster, rc):
        pids = dict(zip(rc.ids, rc[:].apply_sync(os.getpid), strict=True))
        server = _parent(pids[0])
        long = rc[1].apply_async(time.sleep, 60)
        rc[0].apply_sync(signal.signal, signal.SIGTERM, signal.SIG_IGN)  # stop must SIGKILL it
        os.kill(pids[1], signal.SIGKILL)
        with pytest.raises(ipp.EngineError, match="SIGKILL"):
            long.get(timeout=20)
        started = time.monotonic()
        cluster.stop_cluster_sync()
        for pid in (pids[0], server):
            assert wait_pid_exit(pid, 10), f"pid {pid} is still running"
        assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("codes", "status"),
    [
        ([], 0),  # nothing forked (a server for replacements only)
        ([0, 0], 0),
        ([-signal.SIGTERM, -signal.SIGTERM], 0),  # stopped: scancel, the launcher's stop
        ([2, 2], 2),  # every engine failed: the job must read FAILED
        ([2, -signal.SIGKILL], 128 + signal.SIGKILL),  # the last failure, as a shell says it
        ([2, 0], 0),  # one served and ended well
        ([-signal.SIGKILL, -signal.SIGTERM], 0),  # died, its replacement was stopped
    ],
)
def test_the_fork_server_exits_non_zero_only_when_every_engine_failed(
    codes: list[int], status: int
) -> None:
    from parallel.engine._forkserver import Endings

    ended = Endings()
    for code in codes:
        ended.add(code)
    assert ended.status() == status
