"""Engines run as batch work (``SCHED_BATCH``, ``parallel/engine/_scheduling.py``): every
thread of a real engine process, unless ``LOOM_ENGINE_SCHED=normal``; a bad value is a
one-line error. Controllers and engines are processes, killed by PID after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _cluster_support import isolate, running_cluster

from parallel.engine._scheduling import wants_batch_policy

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies"),
]


def _policies(pid: int) -> dict[int, int]:
    """Each thread of ``pid``: its scheduling policy."""
    threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    return {tid: os.sched_getscheduler(tid) for tid in threads}


def test_every_thread_of_an_engine_runs_as_batch_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate(monkeypatch, tmp_path)
    monkeypatch.delenv("LOOM_ENGINE_SCHED", raising=False)
    with running_cluster(2) as (_, rc):
        assert rc[:].apply_sync(os.sched_getscheduler, 0) == [os.SCHED_BATCH] * 2
        for info in rc.engines_info().values():
            policies = _policies(info["pid"])
            # main, libzmq's I/O thread, heartbeat, I/O thread, hub link at least
            assert len(policies) >= 5, policies
            assert set(policies.values()) == {os.SCHED_BATCH}, policies
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the client keeps the default


def test_normal_keeps_the_default_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("LOOM_ENGINE_SCHED", "normal")
    with running_cluster(1) as (_, rc):
        (info,) = rc.engines_info().values()
        assert set(_policies(info["pid"]).values()) == {os.SCHED_OTHER}


def test_a_bad_value_stops_the_engine_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate(monkeypatch, tmp_path)
    with running_cluster(0) as (cluster, rc):
        env = {**os.environ, "LOOM_ENGINE_SCHED": "fast"}
        engine = subprocess.run(
            [sys.executable, "-m", "shell", "engine", "-f", str(cluster.cluster_file)],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        assert engine.returncode == 2
        assert engine.stderr == (
            "loom engine: LOOM_ENGINE_SCHED='fast': use batch (the default) or normal\n"
        )
        assert rc.ids == []


@pytest.mark.parametrize(
    ("value", "batch"), [(None, True), ("batch", True), (" Normal ", False), ("", True)]
)
def test_the_setting_s_values(value: str | None, batch: bool) -> None:
    assert wants_batch_policy({} if value is None else {"LOOM_ENGINE_SCHED": value}) is batch
