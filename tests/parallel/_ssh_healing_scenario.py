"""Run in the controller's namespace by ``test_launch_ssh`` (``python -c``): an ``ssh``
cluster whose engine 0 is SIGKILLed on its host; report, as one JSON line on stdout,
whether the same id came back as a new process on the same host with its setup replayed.
Failures are reported, not raised."""

from __future__ import annotations

import json
import os
import signal

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
    except ClusterUnavailable as exc:
        report["error"] = str(exc)
    finally:
        cluster.stop_cluster_sync()
    print(json.dumps(report), flush=True)
