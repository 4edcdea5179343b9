"""What CurveZMQ costs the engine pool: the same cluster with Curve on and off, one run.

Two clusters of 4 local engines on the same address, ``127.0.0.1`` over tcp: one started
with ``--curve`` (what every cluster bound off loopback gets by default: encryption,
the ZAP allow-list), the other plaintext (what loopback gets: HMAC signatures only,
plus the per-buffer HMAC that Curve makes unnecessary). Each is driven from the
benchmark process by one ``Client``, the two taking turns block by block (the order
reversed every other block) so that a change in the machine's load favours neither.
Every figure is a median; the ratio is Curve/plaintext (the table's "loom" column is
Curve, its peer plaintext).

- **broadcast apply** (``apply4_ms``): ``rc[:].apply_sync(zero)``, one call timed at a
  time; 20 warm-up calls each, then 300 in blocks of 50. Target (issue 12): Curve costs
  less than 30% over plaintext, a ratio <= 1.3.
- **push 10 MB** (``push_ms``): ``rc[:].push({"x": a}, block=True)`` of 10 MB of bytes to
  all 4 engines; 1 warm-up, 10 trials (``--quick``: 1 MB, 1 trial). Informative: with
  Curve the buffers skip their own HMAC (``ControllerInfo.authenticates_peers``), so this
  shows encryption against the digest it replaces.
- **start -> 4 engines usable** (``start_s``): ``Cluster(n=4, ...)`` until
  ``rc[:].apply_sync(zero)`` returned; informative (key generation and the ZAP
  handshakes): the two clusters used above, then 2 more each, interleaved (``--quick``:
  only the first two).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import (
    Columns,
    Metric,
    alternating,
    child_env,
    print_bench_json,
    start_run,
    summarize,
    table_lines,
)


def zero() -> int:
    return 0


def _start(curve: bool) -> tuple[Any, Any, float]:
    from parallel import Cluster

    started = time.perf_counter()
    cluster = Cluster(n=4, transport="tcp", ip="127.0.0.1", curve=curve)
    rc = cluster.start_and_connect_sync(timeout=120)
    rc.wait_for_engines(4, timeout=120)
    assert rc[:].apply_sync(zero) == [0, 0, 0, 0]
    elapsed = time.perf_counter() - started
    assert (rc.info.curve is not None) is curve
    return cluster, rc, elapsed


def _applies(rc: Any, count: int) -> list[float]:
    view = rc[:]
    times = []
    for _ in range(count):
        started = time.perf_counter()
        view.apply_sync(zero)
        times.append(time.perf_counter() - started)
    return times


def _pushes(rc: Any, count: int, payload: bytes) -> list[float]:
    view = rc[:]
    times = []
    for _ in range(count):
        started = time.perf_counter()
        view.push({"x": payload}, block=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    is_quick, settings = start_run(
        "bench_security",
        __doc__,
        quick={"applies": 20, "block": 10, "pushes": 1, "push_mb": 1, "starts": 0},
        full={"applies": 300, "block": 50, "pushes": 10, "push_mb": 10, "starts": 2},
    )
    workdir = Path(tempfile.mkdtemp(prefix="loom-bench-security-"))
    os.environ.update(child_env(workdir))  # the controllers and engines import this Loom
    os.environ["JUPYTER_RUNTIME_DIR"] = str(workdir / "runtime")
    os.environ.setdefault("LOOM_HISTORY_FILE", str(workdir / "history.sqlite"))
    samples: dict[str, dict[str, list[float]]] = {
        name: {"apply": [], "push": [], "start": []} for name in ("loom", "plain")
    }
    payload = os.urandom(settings["push_mb"] << 20)
    clusters: dict[str, tuple[Any, Any, float]] = {}
    try:
        for name, curve in (("loom", True), ("plain", False)):
            clusters[name] = _start(curve)
            samples[name]["start"].append(clusters[name][2])
            _applies(clusters[name][1], 20)  # warm-up
            _pushes(clusters[name][1], 1, payload)
        blocks = settings["applies"] // settings["block"]
        for name in alternating(["loom", "plain"], blocks * 2):
            samples[name]["apply"] += _applies(clusters[name][1], settings["block"] // 2)
        for name in alternating(["loom", "plain"], settings["pushes"] * 2):
            samples[name]["push"] += _pushes(clusters[name][1], 1, payload)
    finally:
        for cluster, rc, _ in clusters.values():
            rc.close()
            cluster.stop_cluster_sync()
    for name in alternating(["loom", "plain"], settings["starts"] * 2):
        cluster, rc, elapsed = _start(name == "loom")
        rc.close()
        cluster.stop_cluster_sync()
        samples[name]["start"].append(elapsed)
    metrics: list[Metric[dict[str, list[float]]]] = [
        Metric("apply4_ms", "broadcast apply, 4 engines", "ms", 1e3, 1.3, lambda s: s["apply"]),
        Metric(
            "push_ms",
            f"push {settings['push_mb']} MB to 4 engines",
            "ms",
            1e3,
            None,
            lambda s: s["push"],
        ),
        Metric("start_s", "start -> 4 engines usable", "s", 1.0, None, lambda s: s["start"]),
    ]
    summary = summarize(metrics, samples, "plain")
    print("Curve (loom) vs plaintext, both tcp on 127.0.0.1, 4 local engines")
    for line in table_lines(metrics, summary, "plain", "plaintext", Columns(4, 9, 3)):
        print(line)
    report = {"benchmark": "security", "quick": is_quick, "peer": "plaintext"}
    print_bench_json({**report, "metrics": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
