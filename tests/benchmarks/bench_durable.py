"""The cost of durable task records (issue 13): Loom with its database on, off and sync,
side by side with ipyparallel's hub with its SQLite backend, its in-memory DictDB and none.

Each configuration runs 2 local engines and is measured in a driver process of its own
(this script with ``--driver NAME``), one after the other, so no library's client or
imports share an interpreter with another's:

- **apply_async throughput** (``tasks_per_s``): ``N`` ``lview.apply_async(zero)`` on the
  load-balanced view, every result kept, then ``get()`` of each; tasks/s; a warm-up of
  100 first, then 3 trials, median (``--quick``: 20, then 100 tasks once);
- **apply latency** (``apply_ms``): ``rc[0].apply_sync(zero)``, one call timed at a time;
  20 warm-up calls, then ``M``; median (``--quick``: 4, then 20);
- **CPU per task** (``ctl_us``, ``eng_us``): the controller's and the engines' CPU time
  (the scheduler's, all threads) over the throughput trials, per task.
  Loom's controller only stores records (engines send them in batches after replying),
  ipyparallel's hub is in every task's path, so its controller CPU includes routing.
  A trial's CPU is read once the controller reports the last task each engine ran
  completed (``rc.result_status`` of one msg_id an engine, asked every 10 ms; an engine
  runs and reports its tasks in order), not when the client has the results: records
  still on their way would otherwise go uncounted, and a quick run's whole trial can end
  before the first batch is stored. That all of them were stored is checked after.

Configurations: ``loom-off`` (``LOOM_RECORDS=off``: engines send no records, the
baseline), ``loom-memory`` (``Cluster(db=False)``: records kept in memory),
``loom-db`` (the default: SQLite WAL, ``synchronous=NORMAL``), ``loom-sync``
(``durability="sync"``: each reply waits for its record's commit, ``synchronous=FULL``),
``ipp-nodb`` (``--nodb``), ``ipp-dictdb`` (ipyparallel's default) and ``ipp-sqlite``
(``--sqlitedb``). The table gives each one's medians and the ratios Loom/ipyparallel for
the like-for-like pairs (memory/dictdb, db/sqlite), and each database's cost over its
library's own in-memory run. Prints ``BENCH_JSON {...}`` last. Exit code 0 unless a
driver failed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import (
    PYCACHE_ENV,
    REPO,
    child_env,
    cpu_seconds,
    kill_all_left,
    print_bench_json,
    start_run,
)

CONFIGS = (
    "loom-off",
    "loom-memory",
    "loom-db",
    "loom-sync",
    "ipp-nodb",
    "ipp-dictdb",
    "ipp-sqlite",
)
QUICK = {"warmup_tasks": 20, "tasks": 100, "trials": 1, "warmup_calls": 4, "calls": 20}
FULL = {"warmup_tasks": 100, "tasks": 2000, "trials": 3, "warmup_calls": 20, "calls": 300}


def _cpu_seconds(pids: list[int]) -> float:
    """CPU time of ``pids`` together so far (those gone count 0), in the scheduler's
    nanoseconds: a quick run's controller uses less than one clock tick (10 ms)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def _zero() -> int:
    return 0


def _last_per_engine(results: list[Any]) -> list[str]:
    """The msg_id of the last of ``results`` (finished tasks) each engine ran."""
    last = {ar.engine_id: ar.msg_ids[-1] for ar in results}
    return list(last.values())


def _wait_recorded(rc: Any, msg_ids: list[str], timeout: float = 60.0) -> None:
    """Return once the controller of ``rc`` reports all ``msg_ids`` completed.

    Asked again every 10 ms at most, so the asking adds little to the controller's CPU.
    """
    deadline = time.monotonic() + timeout
    while True:
        status = rc.result_status(msg_ids)
        if len(status["completed"]) == len(msg_ids):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"records of {len(status['pending'])} tasks not stored")
        time.sleep(0.01)


def driver(name: str, settings: dict[str, int]) -> dict[str, Any]:
    """Start the configuration's cluster, measure, stop; the figures."""
    if name.startswith("loom"):
        import parallel

        cluster = parallel.Cluster(
            n=2, db=name != "loom-memory", durability="sync" if name == "loom-sync" else "async"
        )
        rc = cluster.start_and_connect_sync(timeout=60)
        assert cluster._process is not None
        controller = cluster._process.pid
        engines = [record.pid for record in rc._records.values()]
        stop = cluster.stop_cluster_sync
    else:
        import ipyparallel as ipp  # type: ignore[import-untyped]

        flag = {"ipp-nodb": "--nodb", "ipp-dictdb": "--dictdb", "ipp-sqlite": "--sqlitedb"}[name]
        cluster = ipp.Cluster(n=2, controller_args=[flag], log_level=40)
        rc = cluster.start_and_connect_sync()
        rc.wait_for_engines(2, timeout=60)
        controller = cluster.controller.process.pid
        engines = rc[:].apply_sync(os.getpid)
        stop = cluster.stop_cluster_sync
    try:
        lview = rc.load_balanced_view()
        for ar in [lview.apply_async(_zero) for _ in range(settings["warmup_tasks"])]:
            ar.get(timeout=60)
        rates: list[float] = []
        cpu_ctl = cpu_eng = 0.0
        tasks = settings["tasks"]
        for _ in range(settings["trials"]):
            ctl0, eng0 = _cpu_seconds([controller]), _cpu_seconds(engines)
            started = time.perf_counter()
            results = [lview.apply_async(_zero) for _ in range(tasks)]
            for ar in results:
                ar.get(timeout=120)
            rates.append(tasks / (time.perf_counter() - started))
            recorded = name not in ("loom-off", "ipp-nodb")  # the two keep no records
            if recorded:
                _wait_recorded(rc, _last_per_engine(results))
            cpu_ctl += _cpu_seconds([controller]) - ctl0
            cpu_eng += _cpu_seconds(engines) - eng0
            if recorded:  # and every one of them (uncounted: this query is costly)
                _wait_recorded(rc, [msg_id for ar in results for msg_id in ar.msg_ids])
        view = rc[0]
        for _ in range(settings["warmup_calls"]):
            view.apply_sync(_zero)
        latencies = []
        for _ in range(settings["calls"]):
            started = time.perf_counter()
            view.apply_sync(_zero)
            latencies.append((time.perf_counter() - started) * 1000)
        done = tasks * settings["trials"]
        return {
            "tasks_per_s": statistics.median(rates),
            "apply_ms": statistics.median(latencies),
            "ctl_us": cpu_ctl / done * 1e6,
            "eng_us": cpu_eng / done * 1e6,
        }
    finally:
        rc.close()
        stop()


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--driver":
        settings = json.loads(sys.argv[3])
        print("RESULT " + json.dumps(driver(sys.argv[2], settings)), flush=True)
        return 0
    quick, settings = start_run("bench_durable", __doc__, QUICK, FULL)
    results: dict[str, dict[str, float]] = {}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="loom-bench-durable-") as tmp:
        # One bytecode cache for every driver (child_env): each configuration would
        # otherwise compile all its processes import, ipyparallel and IPython included.
        os.environ.setdefault(PYCACHE_ENV, str(Path(tmp) / "pycache"))
        for name in CONFIGS:
            workdir = Path(tmp) / name
            workdir.mkdir()
            env = child_env(workdir)
            env["JUPYTER_RUNTIME_DIR"] = str(workdir / "runtime")
            env["IPYTHONDIR"] = str(workdir / "ipython")
            env["LOOM_HISTORY_FILE"] = str(workdir / "history.sqlite")
            if name == "loom-off":
                env["LOOM_RECORDS"] = "off"
            argv = [sys.executable, __file__, "--driver", name, json.dumps(settings)]
            try:
                out = subprocess.run(
                    argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600
                )
            except subprocess.TimeoutExpired:
                failed[name] = "timed out"
                continue
            finally:
                kill_all_left()
            lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
            if out.returncode != 0 or not lines:
                failed[name] = (out.stderr or out.stdout).strip()[-500:]
                continue
            results[name] = json.loads(lines[-1].removeprefix("RESULT "))
            print(f"  {name}: {results[name]}", flush=True)
    print()
    keys = (
        ("tasks_per_s", "apply_async throughput", "tasks/s"),
        ("apply_ms", "apply latency (median)", "ms"),
        ("ctl_us", "controller CPU per task", "us"),
        ("eng_us", "engines' CPU per task", "us"),
    )
    print(f"{'metric':<26}" + "".join(f"{name:>13}" for name in CONFIGS) + "  unit")
    for key, label, unit in keys:
        row = "".join(
            f"{results[name][key]:>13.4g}" if name in results else f"{'—':>13}" for name in CONFIGS
        )
        print(f"{label:<26}{row}  {unit}")
    print()
    # A CPU figure can be 0 in a short run (below the clock tick, 10 ms): no ratio then.
    ratios: dict[str, dict[str, float | None]] = {}
    pairs = (
        ("loom-memory", "loom-off", "Loom: records in memory / none"),
        ("loom-db", "loom-off", "Loom: SQLite db / none"),
        ("loom-db", "loom-memory", "Loom: SQLite db / memory"),
        ("loom-sync", "loom-memory", "Loom: sync db / memory"),
        ("ipp-sqlite", "ipp-dictdb", "ipyparallel: SQLite / DictDB"),
        ("loom-memory", "ipp-dictdb", "memory: Loom / ipyparallel"),
        ("loom-db", "ipp-sqlite", "SQLite: Loom / ipyparallel"),
        ("loom-sync", "ipp-sqlite", "Loom sync / ipyparallel SQLite"),
    )
    for a, b, label in pairs:
        if a in results and b in results:
            ratios[label] = {key: _ratio(results[a][key], results[b][key]) for key, _, _ in keys}
            parts = ", ".join(
                f"{key} {'n/a' if r is None else f'{r:.3f}x'}" for key, r in ratios[label].items()
            )
            print(f"{label:<32} {parts}")
    for name, why in failed.items():
        print(f"{name}: FAILED: {why}")
    report = {"benchmark": "durable", "quick": quick, "results": results, "ratios": ratios}
    print_bench_json({**report, "failed": failed})
    return 1 if failed else 0


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


if __name__ == "__main__":
    sys.exit(main())
