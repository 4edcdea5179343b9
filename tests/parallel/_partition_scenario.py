"""Run in the controller's network namespace by ``test_partition.py``: a cluster bound
to ``ip`` with one engine in namespace ``node``, driven line by line over stdin/stdout.

Prints one JSON object per line: ``ready`` (the engine registered; its id and pid, and a
load-balanced task with one retry is running on it, held until the engine was lost),
then after the test's ``down`` line ``lost`` (seconds until the client saw the engine
lost, and why), then after ``up`` ``back`` (seconds until it registered again, its id,
its pid, and whether its namespace survived; if it did not, whether it still runs and
how many TCP connections its namespace still has), ``task``: the held task's answer
(the engine's pid, how many times it ran) and how many times the client's balancer
delivered it, and ``exited``: how soon, and why, the engine was lost once SIGKILLed.
Everything it started is killed by PID at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from parallel import Cluster


def _hold(runs: str, release: str) -> tuple[int, int]:
    """The task held across the partition: counts its runs (the first line says it
    started) and waits for ``release`` (created once the client saw the engine lost)."""
    import os
    import time

    with open(runs, "a") as out:
        out.write("run\n")
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)  # another process's file: nothing to wait on but its existence
    with open(runs) as counted:
        return os.getpid(), len(counted.read().splitlines())


def _say(**message: object) -> None:
    print(json.dumps(message), flush=True)


def _wait_line(expected: str) -> None:
    line = sys.stdin.readline().strip()
    if line != expected:
        raise RuntimeError(f"expected {expected!r} from the test, got {line!r}")


def _wait_for_file(path: str, failed: Callable[[], bool], timeout: float) -> bool:
    """Whether ``path`` (written by the engine, another process) appeared in time."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and not failed() and time.monotonic() < deadline:
        time.sleep(0.01)  # a file of another process: its existence is the only signal
    return os.path.exists(path)


def main(spec: str) -> None:
    options = json.loads(spec)
    cluster = Cluster(
        n=0, ip=options["ip"], transport="tcp", heartbeat_timeout=options["hb"],
        curve=options.get("curve"),
    )  # fmt: skip
    engine: subprocess.Popen[bytes] | None = None
    try:
        rc = cluster.start_and_connect_sync(timeout=60)
        argv = ["ip", "netns", "exec", options["node"], sys.executable, "-P", "-m"]
        argv += ["parallel.launchers._node_engine", "-f", str(cluster.cluster_file)]
        with open(options.get("engine_log", os.devnull), "wb") as log:
            engine = subprocess.Popen(
                argv, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
            )
        rc = cluster.wait_for_engines(1, timeout=60)
        (engine_id,) = rc.ids
        rc[engine_id].execute("kept = 42", block=True)
        # A task running when the link goes down: lost with its engine, retried once the
        # engine is back; its first run's late reply must not be delivered as well.
        held = Path(options["held"])
        runs, release = str(held / "runs"), str(held / "release")
        view = rc.load_balanced_view()
        view.retries = 1
        task = view.apply_async(_hold, runs, release)
        balancer = rc._balancer
        assert balancer is not None
        delivered: list[str] = []
        deliver = balancer._deliver

        def counted(task_id: str, *args: object) -> None:
            delivered.append(task_id)
            deliver(task_id, *args)  # type: ignore[arg-type]

        balancer._deliver = counted  # type: ignore[method-assign,assignment]
        started = _wait_for_file(runs, task.ready, 60)
        if task.ready():
            task.get(0)  # raises: the task failed at once, the error says why
        _say(ready={"id": engine_id, "pid": rc._records[engine_id].pid, "started": started})
        _wait_line("down")
        start = time.monotonic()
        lost = rc._pump.pump_until(lambda: engine_id not in rc._links, 60)
        Path(release).touch()  # the first run ends while the engine is cut off
        _say(lost={"seconds": time.monotonic() - start, "seen": lost,
                   "reason": rc._lost.get(engine_id, "")})  # fmt: skip
        _wait_line("up")
        start = time.monotonic()
        back = rc._pump.pump_until(lambda: bool(rc._links), options["heal"])
        report: dict[str, object] = {"seconds": time.monotonic() - start, "seen": back}
        if not back and engine is not None:  # say what is left of it
            alive = engine.poll() is None
            report["engine_alive"] = alive
            ss = ["ip", "netns", "exec", options["node"], "ss", "-Htn", "state", "established"]
            out = subprocess.run(ss, capture_output=True, text=True, timeout=30, check=False)
            report["engine_connections"] = len(out.stdout.splitlines())
        if back:
            (again,) = rc.ids
            report |= {"id": again, "pid": rc._records[again].pid}
            report["kept"] = rc[again].pull("kept", block=True)
        _say(back=report)
        if back:
            pid, count = task.get(timeout=60)
            rc._pump.pump_until(lambda: False, 0.5)  # room for a late second delivery
            _say(task={"pid": pid, "runs": count, "delivered": delivered.count(task.msg_ids[0])})
            # The healed engine exits: the hub's connection watch (a Curve client too,
            # with the cluster's keys) sees its heartbeat connection close, before any
            # heartbeat timeout.
            assert engine is not None
            os.kill(engine.pid, signal.SIGKILL)
            start = time.monotonic()
            gone = rc._pump.pump_until(lambda: again not in rc._links, 60)
            _say(exited={"seconds": time.monotonic() - start, "seen": gone,
                         "reason": rc._lost.get(again, "")})  # fmt: skip
    except Exception as exc:
        process = cluster._process
        tail = process.output_tail(3000) if process is not None else ""
        _say(error=f"{type(exc).__name__}: {exc}\ncontroller output:\n{tail}")
    finally:
        cluster.stop_cluster_sync()
        if engine is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(engine.pid, signal.SIGKILL)
            engine.wait(10)
