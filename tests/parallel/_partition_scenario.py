"""Run in the controller's network namespace by ``test_partition.py``: a cluster bound
to ``ip`` with one engine in namespace ``node``, driven line by line over stdin/stdout.

Prints one JSON object per line: ``ready`` (the engine registered; its id and pid), then
after the test's ``down`` line ``lost`` (seconds until the client saw the engine lost,
and why), then after ``up`` ``back`` (seconds until it registered again, its id, its pid,
and whether its namespace survived; if it did not, whether it still runs and how many
TCP connections its namespace still has). Everything it started is killed by PID at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

from parallel import Cluster


def _say(**message: object) -> None:
    print(json.dumps(message), flush=True)


def _wait_line(expected: str) -> None:
    line = sys.stdin.readline().strip()
    if line != expected:
        raise RuntimeError(f"expected {expected!r} from the test, got {line!r}")


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
        _say(ready={"id": engine_id, "pid": rc._records[engine_id].pid})
        _wait_line("down")
        start = time.monotonic()
        lost = rc._pump.pump_until(lambda: engine_id not in rc._links, 60)
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
