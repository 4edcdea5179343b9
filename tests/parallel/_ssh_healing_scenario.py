"""Run in the controller's namespace by ``test_launch_ssh`` (``python -c``): an ``ssh``
cluster whose engine 0 is SIGKILLed on its host; report, as one JSON line on stdout,
whether the same id came back as a new process on the same host with its setup replayed.
Failures are reported, not raised."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
from pathlib import Path

from _cluster_support import main_function

from parallel import Cluster
from parallel.error import ClusterUnavailable

#: The engine's pid and network namespace; of ``__main__``, so it travels by value (the
#: hosts cannot import this module).
WHERE = main_function(
    """
    def where():
        import os
        return os.getpid(), os.stat("/proc/self/ns/net").st_ino
    """,
    "where",
)


def run(spec: str) -> None:
    cluster = Cluster(engines="ssh", **json.loads(spec))
    report: dict[str, object] = {}
    try:
        rc = cluster.start_and_connect_sync(timeout=60)
        rc[:].setup("marker = 42").get(timeout=30)
        old = rc[0].apply_sync(WHERE)
        report["old"] = old
        os.kill(old[0], signal.SIGKILL)

        def back() -> bool:
            record = rc._records.get(0)
            return record is not None and record.pid != old[0]

        report["back"] = rc._pump.pump_until(back, 30)
        restarts = rc.restarts.get(0)
        report["restarts"] = [restarts.count, restarts.reason] if restarts else None
        report["new"] = rc[0].apply_sync(WHERE)
        report["marker"] = rc[0].pull("marker", block=True)
        report["engines"] = rc[:].apply_sync(WHERE)
        # Its second death within the limit (2/60): given up, with its last output, which
        # the agent read from the engine's log on its host.
        # (A task's fd 2 is its captured output, so it appends to its log file by name.)
        code = f"open({_log_of(rc._records[0].uuid)!r}, 'a').write('last words on the host')"
        rc[0].execute(code, block=True)
        said = io.StringIO()
        with contextlib.redirect_stderr(said):
            os.kill(report["new"][0], signal.SIGKILL)  # type: ignore[index]
            rc._pump.pump_until(lambda: "not restarted" in rc._lost.get(0, ""), 30)
        report["given_up"] = said.getvalue()
    except ClusterUnavailable as exc:
        report["error"] = str(exc)
    finally:
        cluster.stop_cluster_sync()
    print(json.dumps(report), flush=True)


def _log_of(engine_uuid: str) -> str:
    """The log the agent on its host gave engine ``engine_uuid`` (the hosts share this
    file system)."""
    [log] = Path("/tmp").glob(f"loom-ssh-*/engine-{engine_uuid}.log")
    return str(log)
