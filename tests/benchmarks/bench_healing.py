"""Engine pools that heal: Loom against ipyparallel and dask.distributed when engines die.

Each backend runs in a driver process of its own (``--driver BACKEND``; the benchmark
kills its whole process tree by PID afterwards), on 2 engines/workers, and answers:

- **detect_s**: from SIGKILL of an idle engine until the client no longer lists it
  as that process (Loom: ``rc.ids`` and the engine's pid, since its replacement takes the
  same id; ipyparallel: ``rc.ids`` after ``rc.spin()``; dask: the scheduler's worker
  list). Loom's cluster is told never to give up replacing engines (``restart_limit``).
  Trials: 3 (quick: 1).
- **retry_s**: from SIGKILL of the engine running a task (it wrote its pid to a file as
  it started) until the task's result is in, run again elsewhere (Loom and ipyparallel:
  a load-balanced view with ``retries=1``; dask: ``submit(..., retries=1)``, its
  scheduler reschedules a dead worker's tasks by itself). Trials: 3 (quick: 1).
- **many_per_s / many_rss_mb**: N no-op tasks submitted one by one through the load
  balancer (``apply_async``; dask: ``submit``), ``retries=3``, while engines are
  SIGKILLed at Poisson-distributed times (mean 10 s; seeded), then all results
  gathered and checked: throughput, the driver's peak RSS (client and, for dask, its
  in-process scheduler), and lost/duplicated/wrong counts (must be 0). Loom's
  controller replaces dead engines (same id); ipyparallel never does, so its driver
  starts a new engine after each kill (``Cluster.start_engines_sync``); dask's nanny
  restarts its worker. N: Loom 100,000; ipyparallel and dask 20,000 (at their few
  hundred tasks/s 100,000 would take many minutes: anchors on a smaller N, so their
  RSS is per 20,000 handles and says so); quick: 2,000 each.

Printed: each figure's median per backend and the ratios Loom/ipyparallel and
Loom/dask; the last line is ``BENCH_JSON {...}``. Time figures: lower is better.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bench

BACKENDS = ("loom", "ipyparallel", "dask")
ENGINES = 2
MEAN_KILL_INTERVAL = 10.0
SEED = 13
DRIVER_TIMEOUT = 1800.0


# -- the functions tasks run (by value: cloudpickle, defined in __main__) ----------------


def noop(i: int) -> int:
    return i


def pid_then_wait(path: str, seconds: float) -> int:
    import os
    import time

    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return os.getpid()


def getpid() -> int:
    import os

    return os.getpid()


# -- drivers: one backend each, in their own process --------------------------------------


class Pool:
    """What the scenarios need of a backend."""

    def pids(self) -> dict[Any, int]:
        raise NotImplementedError

    def submit(self, fn: Callable[..., Any], *args: Any, retries: int) -> Any:
        raise NotImplementedError

    def done(self, handle: Any) -> bool:
        raise NotImplementedError

    def result(self, handle: Any, timeout: float) -> Any:
        raise NotImplementedError

    def ids(self) -> set[Any]:
        raise NotImplementedError

    def gone(self, engine: Any, pid: int) -> bool:
        """Whether the client no longer lists ``engine`` as the process ``pid``."""
        return engine not in self.ids()

    def after_kill(self) -> None:
        """Called after each kill (ipyparallel: start a replacement engine)."""

    def wait_engines(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.ids()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(self.ids())} of {count} engines after {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        raise NotImplementedError


class IppLike(Pool):
    """Loom or ipyparallel through the API they share."""

    def __init__(self, backend: str) -> None:
        import importlib

        self.backend = backend
        ipp = importlib.import_module("parallel" if backend == "loom" else "ipyparallel")
        # Loom replaces a dead engine (same id), but gives up on one that dies 3 times a
        # minute: here engines die on purpose, so it must never give up.
        options = {"restart_limit": "1000000/1"} if backend == "loom" else {}
        self.cluster = ipp.Cluster(n=ENGINES, **options)
        self.rc = self.cluster.start_and_connect_sync()
        self.rc.wait_for_engines(ENGINES, timeout=120)
        self.view = self.rc.load_balanced_view()

    def pids(self) -> dict[Any, int]:
        ids = sorted(self.rc.ids)
        return dict(zip(ids, self.rc[ids].apply_sync(getpid), strict=True))

    def submit(self, fn: Callable[..., Any], *args: Any, retries: int) -> Any:
        self.view.retries = retries
        return self.view.apply_async(fn, *args)

    def done(self, handle: Any) -> bool:
        return bool(handle.ready())

    def result(self, handle: Any, timeout: float) -> Any:
        return handle.get(timeout=timeout)

    def ids(self) -> set[Any]:
        if self.backend == "ipyparallel":
            self.rc.spin()
        return set(self.rc.ids)

    def gone(self, engine: Any, pid: int) -> bool:
        if self.backend == "loom":  # its replacement may be listed under the same id at once
            record = self.rc._records.get(engine) if engine in self.ids() else None
            return record is None or record.pid != pid
        return engine not in self.ids()

    def after_kill(self) -> None:
        if self.backend == "ipyparallel":  # it never replaces an engine
            self.cluster.start_engines_sync(n=1)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.rc.close()
        self.cluster.stop_cluster_sync()


class Dask(Pool):
    def __init__(self) -> None:
        from dask.distributed import Client, LocalCluster

        self.cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=ENGINES, threads_per_worker=1, processes=True, dashboard_address=None
        )
        self.client = Client(self.cluster)  # type: ignore[no-untyped-call]
        self.client.wait_for_workers(ENGINES, timeout=120)

    def pids(self) -> dict[Any, int]:
        return dict(self.client.run(getpid))

    def submit(self, fn: Callable[..., Any], *args: Any, retries: int) -> Any:
        return self.client.submit(fn, *args, retries=retries, pure=False)

    def done(self, handle: Any) -> bool:
        return bool(handle.done())

    def result(self, handle: Any, timeout: float) -> Any:
        return handle.result(timeout=timeout)

    def ids(self) -> set[Any]:
        return set(self.client.scheduler_info()["workers"])

    def stop(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]
        self.cluster.close()


def detect(pool: Pool, trials: int) -> list[float]:
    samples = []
    for _ in range(trials):
        pool.wait_engines(ENGINES, 120)
        engine, pid = sorted(pool.pids().items())[0]
        start = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while not pool.gone(engine, pid):
            if time.monotonic() - start > 120:
                raise RuntimeError("not detected within 120 s")
            time.sleep(0.005)
        samples.append(time.monotonic() - start)
        pool.after_kill()
    return samples


def retry(pool: Pool, trials: int, workdir: Path) -> list[float]:
    samples = []
    for trial in range(trials):
        pool.wait_engines(ENGINES, 120)
        marker = workdir / f"started-{trial}"
        handle = pool.submit(pid_then_wait, str(marker), 1.0, retries=1)
        deadline = time.monotonic() + 60
        while not (marker.exists() and marker.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError("the task did not start within 60 s")
            pool.done(handle)  # lets a pumping client read its sockets
            time.sleep(0.005)
        victim = int(marker.read_text().split()[0])
        start = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        value = pool.result(handle, 300)
        samples.append(time.monotonic() - start)
        if value == victim:
            raise RuntimeError("the result came from the killed engine")
        pool.after_kill()
    return samples


def many(pool: Pool, count: int) -> dict[str, Any]:
    pool.wait_engines(ENGINES, 120)
    rng = random.Random(SEED)
    handles = []
    kills = 0
    start = time.monotonic()
    due = start + rng.expovariate(1 / MEAN_KILL_INTERVAL)

    def maybe_kill() -> None:
        nonlocal due, kills
        if time.monotonic() < due:
            return
        with contextlib.suppress(Exception):
            pids = list(pool.pids().values())
            os.kill(rng.choice(pids), signal.SIGKILL)
            kills += 1
            pool.after_kill()
        due = time.monotonic() + rng.expovariate(1 / MEAN_KILL_INTERVAL)

    for i in range(count):
        handles.append(pool.submit(noop, i, retries=3))
        if i % 100 == 0:
            maybe_kill()
    wrong = lost = 0
    for i, handle in enumerate(handles):
        while True:
            try:
                value = pool.result(handle, 1.0)
                break
            except Exception as exc:
                if "imeout" not in type(exc).__name__ + str(exc):
                    value = exc
                    break
                maybe_kill()
        if isinstance(value, Exception):
            lost += 1
        elif value != i:
            wrong += 1
    elapsed = time.monotonic() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "count": count,
        "per_s": count / elapsed,
        "rss_mb": rss_mb,
        "kills": kills,
        "lost": lost,
        "wrong": wrong,
        # A result is settled once (a Future); a second delivery cannot show up as a
        # value, and each backend's handle ignores it: duplicates are counted as 0.
        "duplicated": 0,
    }


def driver_main(backend: str, settings: dict[str, Any]) -> int:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-healing-{backend}-"))
    pool: Pool | None = None
    try:
        pool = Dask() if backend == "dask" else IppLike(backend)
        report = {
            "detect_s": detect(pool, settings["trials"]),
            "retry_s": retry(pool, settings["trials"], workdir),
            "many": many(pool, settings["many"][backend]),
        }
        print("RESULT " + json.dumps(report), flush=True)
        return 0
    except Exception:
        print("ERROR " + json.dumps(traceback.format_exc()), flush=True)
        return 1
    finally:
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.stop()


# -- the benchmark process ----------------------------------------------------------------


def run_driver(backend: str, settings: dict[str, Any], workdir: Path) -> dict[str, Any]:
    env = bench.child_env(workdir)
    home = workdir / backend
    home.mkdir()
    for name, sub in (
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
        ("LOOM_HISTORY_FILE", "loom-history.sqlite"),
        ("DASK_TEMPORARY_DIRECTORY", "dask"),
    ):
        env[name] = str(home / sub)
    argv = [sys.executable, __file__, "--driver", backend, json.dumps(settings)]
    proc = subprocess.Popen(
        argv, cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=DRIVER_TIMEOUT)
    except subprocess.TimeoutExpired:
        bench.sigkill_group(proc.pid)
        out, _ = proc.communicate()
    finally:
        left = [pid for pid in bench.descendants(os.getpid()) if pid != proc.pid]
        for pid in left:
            bench.sigkill_group(pid)
        bench.sigkill_group(proc.pid)
    text = out.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
        if line.startswith("ERROR "):
            return {"error": json.loads(line[len("ERROR ") :])}
    return {"error": f"no result; output ends:\n{text[-3000:]}"}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--driver":
        return driver_main(sys.argv[2], json.loads(sys.argv[3]))
    _quick, settings = bench.start_run(
        "bench_healing",
        __doc__,
        {"trials": 1, "many": dict.fromkeys(BACKENDS, 2000)},
        {"trials": 3, "many": {"loom": 100_000, "ipyparallel": 20_000, "dask": 20_000}},
    )
    bench.become_subreaper()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-healing-") as tmp:
        for backend in BACKENDS:
            results[backend] = run_driver(backend, settings, Path(tmp))
            if "error" in results[backend]:
                print(f"{backend}: FAILED\n{results[backend]['error']}", flush=True)
    rows: list[tuple[str, str, Callable[[dict[str, Any]], float]]] = [
        ("engine-kill detection", "s", lambda r: statistics.median(r["detect_s"])),
        ("kill -> retried result (1 s task)", "s", lambda r: statistics.median(r["retry_s"])),
        ("tasks with kills", "/s", lambda r: r["many"]["per_s"]),
        ("client RSS, tasks with kills", "MB", lambda r: r["many"]["rss_mb"]),
    ]
    report: dict[str, Any] = {"backends": results, "figures": {}}
    print(
        f"\n{'figure':32} {'loom':>10} {'ipyparallel':>12} {'dask':>10} {'L/ipp':>7} {'L/dask':>7}"
    )
    for label, unit, pick in rows:
        values: dict[str, float] = {}
        for backend in BACKENDS:
            with contextlib.suppress(KeyError, TypeError, statistics.StatisticsError):
                values[backend] = pick(results[backend])
        cells = [f"{values[b]:.3g}" if b in values else "-" for b in BACKENDS]
        ratios = [
            f"{values['loom'] / values[p]:.2f}" if "loom" in values and values.get(p) else "-"
            for p in ("ipyparallel", "dask")
        ]
        print(f"{label + ' (' + unit + ')':32} {cells[0]:>10} {cells[1]:>12} {cells[2]:>10} "
              f"{ratios[0]:>7} {ratios[1]:>7}")  # fmt: skip
        report["figures"][label] = {"unit": unit, **values}
    for backend in BACKENDS:
        run: dict[str, Any] | None = results[backend].get("many")
        if run:
            print(
                f"{backend}: {run['count']:,} tasks, {run['kills']} engines killed, "
                f"lost {run['lost']}, wrong {run['wrong']}, duplicated {run['duplicated']}"
            )
    counts: dict[str, Any] = dict(settings["many"])  # type: ignore[call-overload]
    if counts["loom"] != counts["ipyparallel"]:
        print("note: ipyparallel and dask ran 20,000 tasks (anchors on a smaller N), Loom 100,000")
    bench.print_bench_json(report)
    loom: dict[str, Any] = results["loom"].get("many") or {}
    return 1 if "error" in results["loom"] or loom.get("lost") or loom.get("wrong") else 0


if __name__ == "__main__":
    sys.exit(main())
