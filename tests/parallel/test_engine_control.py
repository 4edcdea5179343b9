"""Engines as kernels: attach a Jupyter client to one, stop one, abort, signal."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from _cluster_support import isolate, main_function, running_cluster
from _support import Reaper, run

import parallel as ipp
from kernel import connect_client
from kernel.protocol import ConnectionInfo, Message, runtime_dir
from parallel.engine import engine_connection_file

SLEEPER = "import time\ndef sleeper():\n    print('started', flush=True)\n    time.sleep(30)\n"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def test_a_jupyter_client_attached_to_an_engine_shares_its_namespace() -> None:
    with running_cluster(1) as (_, rc):
        rc[0].push({"shared": 41}, block=True)
        path = engine_connection_file(rc.info, 0)
        assert path.stat().st_mode & 0o777 == 0o600

        async def scenario(reaper: Reaper) -> None:
            async with connect_client(ConnectionInfo.read(path)) as client:
                out: list[Message] = []
                reply = await client.execute("shared + 1", on_output=out.append, timeout=30)
                assert reply.content["status"] == "ok"
                results = [m for m in out if m.msg_type == "execute_result"]
                assert results[0].content["data"]["text/plain"] == "42"
                await client.execute("shared = 'from the console'", timeout=30)

        run(scenario)
        assert rc[0].pull("shared", block=True) == "from the console"
    assert not list(runtime_dir().glob("kernel-engine-*.json"))  # removed at stop


def test_a_stopped_engine_is_lost_by_heartbeat_and_its_task_fails() -> None:
    with running_cluster(2) as (_, rc):
        pid = rc[1].apply_sync(os.getpid)
        task = rc[1].apply_async(time.sleep, 30)
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            with pytest.raises(ipp.EngineError, match="heartbeat"):
                task.get(timeout=30)
            assert time.monotonic() - started < 6  # the 2.5 s grace, plus a ping interval
            assert rc.ids == [0]
        finally:
            os.kill(pid, signal.SIGCONT)
        assert rc[0].apply_sync(lambda: "alive") == "alive"


def test_abort_answers_queued_tasks_aborted_and_send_signal_interrupts() -> None:
    with running_cluster(1) as (_, rc):
        engine = rc[0]
        running = engine.apply_async(main_function(SLEEPER, "sleeper"))
        queued = [engine.apply_async(lambda: "ran") for _ in range(3)]
        rc.abort([msg_id for result in queued for msg_id in result.msg_ids])
        # A signal only interrupts a task that runs: wait until it says it does.
        assert rc._pump.pump_until(lambda: "started" in running.stdout, 30)
        rc.send_signal(signal.SIGINT, targets=[0])
        with pytest.raises(ipp.RemoteError) as interrupted:
            running.get(timeout=30)
        assert interrupted.value.ename == "KeyboardInterrupt"
        for result in queued:
            with pytest.raises(ipp.RemoteError, match="aborted"):
                result.get(timeout=30)
        assert engine.apply_sync(lambda: "fine") == "fine"


def test_await_with_a_timeout_leaves_the_client_usable() -> None:
    with running_cluster(1) as (_, rc):

        async def scenario() -> str:
            slow = rc[0].apply_async(time.sleep, 2)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(slow), 0.05)
            await slow
            return str(await rc[0].apply_async(lambda: "next"))

        assert asyncio.run(scenario()) == "next"


def test_a_dead_controller_makes_a_wait_fail_with_controller_lost_instead_of_hanging() -> None:
    with running_cluster(1) as (cluster, rc):
        running = rc[0].apply_async(main_function(SLEEPER, "sleeper"))
        assert rc._pump.pump_until(lambda: "started" in running.stdout, 30)
        assert cluster._process is not None
        os.kill(cluster._process.pid, signal.SIGKILL)
        started = time.monotonic()
        # The engine outlives its controller (a restore would find it), so the task runs
        # on; the wait, though, says within 10 s that the controller is gone.
        with pytest.raises(ipp.ControllerLost, match="controller lost"):
            running.get(timeout=60)
        assert time.monotonic() - started < 10
        assert not running.ready()  # still pending: its engine may still answer
        assert not pid_gone_within(rc, 0.1)
        # Stopping the cluster stops the engine its dead controller left (by pid).
        engine = rc._records[0].pid
        cluster.stop_cluster_sync()
        from kernel.client import wait_pid_exit

        assert wait_pid_exit(engine, 10)


def pid_gone_within(rc: ipp.Client, seconds: float) -> bool:
    from kernel.client import wait_pid_exit

    return wait_pid_exit(rc._records[0].pid, seconds) if 0 in rc._records else True
