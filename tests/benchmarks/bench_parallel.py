"""Loom's engine pool (``parallel``) against ipyparallel and dask.distributed, in one run.

Each backend runs 4 local engines with its defaults (Loom's ``Cluster``: ipc, Unix
sockets in an owner-only directory, so large buffers skip their own digest;
ipyparallel's: tcp on 127.0.0.1; dask: a ``LocalCluster`` of 4 worker processes with one
thread each, ``processes=True``, no dashboard, tcp) and is driven from a process of its
own, a *driver* (this script with ``--driver``), so no backend's client threads or
imports share an interpreter with another's. The benchmark process only orchestrates:
it tells the drivers what to measure over a pipe, one block at a time, the backends
taking turns (the order reversed every other round), so a change in the machine's
background load cannot favour one of them. Every figure is a median; the ratios are
Loom/ipyparallel and Loom/dask. The figures:

- **start -> 4 engines usable** (``start_s``): from ``Cluster(n=4)`` (dask:
  ``LocalCluster(...)``) until ``rc[:].apply_sync(zero)`` (dask: ``Client(cluster)``,
  then ``client.run(zero)``) has returned from all four; cluster start, engine start,
  registration and connecting included. Each start is a fresh driver process that has
  already imported its library (``import parallel``, ``parallel.Cluster`` and
  ``parallel.Client`` resolved; ``import ipyparallel``; ``from dask.distributed import
  LocalCluster, Client``), so a library's import is not counted but everything it does
  lazily when starting is. The driver stops its cluster after the trial and every
  process it left is killed. One discarded warm-up round (it fills the page cache and
  the bytecode cache), then 5 interleaved rounds.
- **apply on all engines** (``apply4_ms``): ``rc[:].apply_sync(zero)``, one call timed at
  a time (dask: ``client.run(zero)``, which runs a function on every worker outside its
  task graph); 20 warm-up calls, then 300 in blocks of 100.
- **the same with 16 engines** (``apply16_ms``): Loom and ipyparallel only (the issue
  has no dask figure), on 16-engine clusters started after the 4-engine ones are
  stopped; 200 calls in blocks of 100. Their start (``start16_s``) is shown, one trial,
  no target.
- **execute** (``execute_ms``): ``rc[:].execute("a=1", block=True)``; Loom and
  ipyparallel (dask has no engine namespace to run code in); as apply.
- **load-balanced map** (``map_per_s``): ``rc.load_balanced_view().map_sync(ident,
  range(5000), chunksize=1)`` (dask: ``client.gather(client.map(ident, range(5000),
  pure=False))``), results checked; tasks/s; one warm-up map of 100, then 3 trials each.
- **single tasks** (``async_per_s``): 2,000 ``lview.apply_async(zero)`` on the
  load-balanced view, then ``get()`` of each (dask: ``client.submit(zero, pure=False)``,
  then ``client.gather``); tasks/s; one warm-up of 100, then 3 trials each.
- **push 100 MB** (``push_s``): ``rc[:].push({"x": a}, block=True)`` of a 100 MB
  float64 numpy array to all 4 engines (dask: ``client.scatter(a, broadcast=True,
  hash=False)``); afterwards, untimed, every engine is checked to hold the array
  (dask: ``who_has`` lists all 4 workers) and it is deleted. 1 warm-up, 5 trials.
- **pull 100 MB** (``pull_s``): ``rc[0].pull("y", block=True)`` of a 100 MB array made on
  engine 0 (dask: ``client.gather`` of a future whose 100 MB result lives on one
  worker), checked; 1 warm-up, 5 trials.
- **many single tasks** (``many_per_s``, ``many_rss_mb``, ``many_kib_per_task``):
  ``apply_async`` on the load-balanced view N times, every ``AsyncResult`` kept in a
  list as a script would, then ``get()`` of each; tasks/s and the client's peak RSS
  (``VmHWM``), from a fresh client process connected to the running 4-engine cluster
  (so peaks of the other figures do not mix in; the drivers' own clients are closed
  first, so they do not read the traffic), Loom and ipyparallel only. N is 100,000 for
  Loom but 20,000 for ipyparallel: at its ~300 tasks/s 100,000 would take 5 minutes
  alone. So the ratio compares rates, and the RSS is also given per task (peak minus
  the RSS before the first task, over N). If a backend's rate in the 2,000-task figure
  predicts more than 60 s for its N, N shrinks to fit (the output says so), and Loom's
  ``< 500 MB`` target is checked on its peak extrapolated to 100,000 tasks. One run
  each, no interleaving.

Targets are those of issue 10: absolute ones on Loom's figure (start <= 0.5 s, apply
<= 1.5 ms, ...) and ratios to ipyparallel for the rates. A figure a backend cannot
give is printed as ``—``, with the reason under the table.

The functions sent to the engines (``zero``, ``ident``, ...) are built by ``exec`` in a
namespace named ``__main__``, as a script's, a console's or a notebook's functions are:
ipyparallel cans them by value and gives them the engine's namespace, and Loom and dask
pickle them by value (cloudpickle), so no engine needs this script on its path.

Isolation: each driver gets a ``JUPYTER_RUNTIME_DIR``, ``IPYTHONDIR``,
``LOOM_HISTORY_FILE`` and ``DASK_TEMPORARY_DIRECTORY`` of its own in the run's
temporary directory, and ``PYTHONPYCACHEPREFIX`` as in ``bench_kernel.py``. This process
is a child subreaper: every process a driver started (controllers, engines, nannies,
workers) stays its descendant even after the driver exits, so after each driver it
kills by PID whatever that driver left, and at the end everything still alive that it
started, and checks they are gone. Each driver's output is kept in a log file, whose
tail is shown if the driver fails.

Prints a table (medians, ratios, target, ``MISSED`` where a target is missed), the time
each phase took, and a final ``BENCH_JSON {...}`` line. The exit code is 0 whether
targets are met or not; it is non-zero only when something could not be measured (a
process crashed, hung or answered wrongly). A backend that fails so is reported (with
its driver's traceback and log), its driver is closed and it sits out the rest of that
cluster's figures, whose cells say why they are empty (``errors`` in ``BENCH_JSON``);
the other backends are still measured and the table is still printed. Linux only
(``/proc``, ``pidfd_open``, ``prctl``).

``--quick`` (a smoke run): one startup round without warm-up whose clusters stay up for
the other figures, 20 applies and executes, maps and task runs of 100, a 5 MB array,
no 16-engine figure, many tasks shrunk to 500 (Loom) and 200 (ipyparallel).

``--arrays`` (a partial run): only the push and pull figures, as in the full run (100 MB,
one warm-up, 5 trials; with ``--quick`` its 5 MB and one trial), on one 4-engine cluster
per backend. Run it once more with ``LOOM_SHM=off`` in the environment for Loom's figures
over the sockets instead of shared memory (docs/architecture.md, "Large buffers").

``--tasks`` (a partial run): only the per-call and per-task figures (apply, execute, map,
single tasks, many single tasks) as in the full run, on one 4-engine cluster per backend:
no startup rounds, no arrays, no 16 engines (the client's CPU per task, issue 10).

``--sixteen`` (a partial run): only the 16-engine figures (``apply16_ms``, ``start16_s``)
as in the full run, Loom and ipyparallel (the records' cost per task at 16 engines,
issue 10).

Run: ``python tests/benchmarks/bench_parallel.py [--quick] [--arrays | --tasks | --sixteen]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _bench_common, from any cwd
import _bench_common as bench  # it also puts the repository on sys.path

BACKENDS = ("loom", "ipyparallel", "dask")
POOLS = ("loom", "ipyparallel")  # the figures dask has no counterpart for
MODULES = {"loom": "parallel", "ipyparallel": "ipyparallel"}
ENGINES = 4
MANY_ENGINES = 16
BLOCK = 100  # calls per backend before switching to the next
WARMUP_TASKS = 100
NOMINAL_MANY = 100_000  # the issue's figure; the RSS target is for this many tasks
RSS_TARGET_MB = 500.0
READY_TIMEOUT_S = 120.0
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 60.0
GONE_TIMEOUT_S = 10.0
EXIT_GRACE_S = 5.0  # for what a driver started to exit once its cluster is stopped


@dataclass(frozen=True)
class Settings:
    startup_trials: int
    startup_warmup: bool  # False: no warm-up round, and that round's clusters stay up
    apply_warmup: int
    apply_calls: int
    apply16_calls: int  # 0: the 16-engine figure is skipped
    map_tasks: int
    map_trials: int
    async_tasks: int
    async_trials: int
    array_bytes: int
    array_warmup: bool
    array_trials: int
    many_loom: int
    many_ipyparallel: int
    many_cap_s: float  # N shrinks so that a backend's many tasks take about this long
    arrays_only: bool = False  # --arrays: only push and pull
    tasks_only: bool = False  # --tasks: only apply, execute, map, single and many tasks
    sixteen_only: bool = False  # --sixteen: only the 16-engine figures


QUICK = Settings(1, False, 5, 20, 0, 100, 1, 100, 1, 5_000_000, False, 1, 500, 200, 20.0)
FULL = Settings(
    5, True, 20, 300, 200, 5000, 3, 2000, 3, 100_000_000, True, 5, 100_000, 20_000, 60.0
)


class BenchError(Exception):
    """A backend misbehaved (crashed, hung, answered wrongly): the run cannot measure."""


# -- the driver: one process per backend, measuring on command ------------------------------

MAIN_SOURCE = """
def zero():
    return 0

def ident(x):
    return x

def x_check():
    return (int(x.nbytes), float(x[0]), float(x[-1]))

def make_array(size):
    import numpy
    return numpy.arange(size, dtype="float64")
"""


def main_functions() -> dict[str, Any]:
    """The functions sent to engines, defined in a namespace named ``__main__``."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(MAIN_SOURCE, "<bench_parallel>", "exec"), namespace)
    return namespace


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise BenchError(what)


def proc_status_kib(field_name: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {field_name} in /proc/self/status")


def _timed_calls(
    call: Callable[[], object], check: Callable[[object], bool], count: int, what: str
) -> list[float]:
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - t0)
        expect(check(result), f"{what} returned {result!r}")
    return times


class PoolDriver:
    """Loom or ipyparallel, through the API they share (``import ... as ipp``)."""

    def __init__(self, backend: str, n: int) -> None:
        self.ipp = importlib.import_module(MODULES[backend])
        self.ipp.Cluster, self.ipp.Client  # noqa: B018 (Loom's names load lazily: now)
        self.n = n
        self.f = main_functions()
        self.cluster: Any = None
        self.rc: Any = None
        self.array: Any = None

    def start(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.cluster = self.ipp.Cluster(n=self.n)
        self.rc = self.cluster.start_and_connect_sync()
        result = self.rc[:].apply_sync(self.f["zero"])
        elapsed = time.perf_counter() - t0
        expect(result == [0] * self.n, f"apply on all engines returned {result!r}")
        return {"start_s": elapsed, "connection_file": self._connection_file()}

    def _connection_file(self) -> str:
        if self.ipp.__name__ == "parallel":
            return str(self.cluster.cluster_file)
        name = f"ipcontroller-{self.cluster.cluster_id}-client.json"  # ipyparallel
        path = Path(self.cluster.profile_dir) / "security" / name
        expect(path.exists(), f"no ipyparallel client file at {path}")
        return str(path)

    def apply(self, count: int) -> list[float]:
        view, zero = self.rc[:], self.f["zero"]
        return _timed_calls(lambda: view.apply_sync(zero), ([0] * self.n).__eq__, count, "apply")

    def execute(self, count: int) -> list[float]:
        view = self.rc[:]
        return _timed_calls(
            lambda: view.execute("a=1", block=True), lambda r: True, count, "execute"
        )

    def lb_map(self, tasks: int) -> float:
        lview = self.rc.load_balanced_view()
        t0 = time.perf_counter()
        result = lview.map_sync(self.f["ident"], range(tasks), chunksize=1)
        elapsed = time.perf_counter() - t0
        expect(list(result) == list(range(tasks)), f"map of {tasks} returned wrong results")
        return elapsed

    def tasks(self, count: int) -> float:
        lview, zero = self.rc.load_balanced_view(), self.f["zero"]
        t0 = time.perf_counter()
        results = [lview.apply_async(zero) for _ in range(count)]
        values = [r.get() for r in results]
        elapsed = time.perf_counter() - t0
        expect(values == [0] * count, f"{count} tasks returned wrong results")
        return elapsed

    def push(self, nbytes: int) -> float:
        import numpy

        if self.array is None or self.array.nbytes != nbytes:
            self.array = numpy.arange(nbytes // 8, dtype="float64")
        view = self.rc[:]
        t0 = time.perf_counter()
        view.push({"x": self.array}, block=True)
        elapsed = time.perf_counter() - t0
        held = view.apply_sync(self.f["x_check"])
        expected = (self.array.nbytes, 0.0, float(self.array.size - 1))
        expect(held == [expected] * self.n, f"after push the engines hold {held!r}")
        view.execute("del x", block=True)
        return elapsed

    def pull_setup(self, nbytes: int) -> None:
        code = f"import numpy\ny = numpy.arange({nbytes // 8}, dtype='float64')"
        self.rc[0].execute(code, block=True)

    def pull(self, nbytes: int) -> float:
        t0 = time.perf_counter()
        y = self.rc[0].pull("y", block=True)
        elapsed = time.perf_counter() - t0
        size = nbytes // 8
        expect(y.shape == (size,) and y[-1] == size - 1, f"pulled {type(y)} {y!r:.80}")
        return elapsed

    def connect(self, path: str) -> int:
        """A client of a running cluster, warmed up; ``VmRSS`` (KiB) now."""
        self.rc = self.ipp.Client(path)
        self.rc.wait_for_engines(self.n, timeout=60)
        lview = self.rc.load_balanced_view()
        for _ in range(10):
            lview.apply_sync(self.f["zero"])
        return proc_status_kib("VmRSS")

    def many(self, count: int) -> dict[str, float]:
        before = proc_status_kib("VmRSS")
        elapsed = self.tasks(count)
        return {"elapsed_s": elapsed, "rss_before_kib": before, "hwm_kib": proc_status_kib("VmHWM")}

    def disconnect(self) -> None:
        if self.rc is not None:
            self.rc.close()

    def stop(self) -> None:
        self.disconnect()
        if self.cluster is not None:
            self.cluster.stop_cluster_sync()


class DaskDriver:
    """dask.distributed: a ``LocalCluster`` of worker processes and a ``Client``."""

    def __init__(self, backend: str, n: int) -> None:
        from dask.distributed import Client, LocalCluster

        self.LocalCluster, self.Client = LocalCluster, Client
        self.n = n
        self.f = main_functions()
        self.cluster: Any = None
        self.client: Any = None
        self.array: Any = None
        self.remote_y: Any = None

    def start(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.cluster = self.LocalCluster(
            n_workers=self.n, threads_per_worker=1, processes=True, dashboard_address=None
        )
        self.client = self.Client(self.cluster)
        result = self.client.run(self.f["zero"])
        elapsed = time.perf_counter() - t0
        expect(list(result.values()) == [0] * self.n, f"client.run returned {result!r}")
        return {"start_s": elapsed, "connection_file": None}

    def apply(self, count: int) -> list[float]:
        run, zero, n = self.client.run, self.f["zero"], self.n
        return _timed_calls(
            lambda: run(zero), lambda r: list(r.values()) == [0] * n, count, "client.run"
        )

    def lb_map(self, tasks: int) -> float:
        t0 = time.perf_counter()
        result = self.client.gather(self.client.map(self.f["ident"], range(tasks), pure=False))
        elapsed = time.perf_counter() - t0
        expect(list(result) == list(range(tasks)), f"map of {tasks} returned wrong results")
        return elapsed

    def tasks(self, count: int) -> float:
        submit, zero = self.client.submit, self.f["zero"]
        t0 = time.perf_counter()
        futures = [submit(zero, pure=False) for _ in range(count)]
        values = self.client.gather(futures)
        elapsed = time.perf_counter() - t0
        expect(values == [0] * count, f"{count} tasks returned wrong results")
        return elapsed

    def push(self, nbytes: int) -> float:
        import numpy

        if self.array is None or self.array.nbytes != nbytes:
            self.array = numpy.arange(nbytes // 8, dtype="float64")
        t0 = time.perf_counter()
        future = self.client.scatter(self.array, broadcast=True, hash=False)
        elapsed = time.perf_counter() - t0
        holders = self.client.who_has(future)[future.key]
        expect(len(holders) == self.n, f"after scatter {len(holders)} workers hold the array")
        future.release()
        return elapsed

    def pull_setup(self, nbytes: int) -> None:
        from dask.distributed import wait

        first = sorted(self.client.scheduler_info()["workers"])[0]
        self.remote_y = self.client.submit(
            self.f["make_array"],
            nbytes // 8,
            workers=[first],
            allow_other_workers=False,
            pure=False,
        )
        wait(self.remote_y)

    def pull(self, nbytes: int) -> float:
        t0 = time.perf_counter()
        y = self.client.gather(self.remote_y)
        elapsed = time.perf_counter() - t0
        size = nbytes // 8
        expect(y.shape == (size,) and y[-1] == size - 1, f"gathered {type(y)} {y!r:.80}")
        return elapsed

    def disconnect(self) -> None:
        """The scheduler lives in this process (``LocalCluster``): keep the client."""

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def driver_main(backend: str, n: int, reply_fd: int) -> int:
    """Answer the commands read from stdin, one JSON line each, on ``reply_fd``."""

    def reply(message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(reply_fd, data) :]

    try:
        driver: PoolDriver | DaskDriver = (DaskDriver if backend == "dask" else PoolDriver)(
            backend, n
        )
    except Exception:
        reply({"error": traceback.format_exc()})
        return 1
    reply({"ok": "ready"})
    stopped = False
    try:
        for line in sys.stdin:
            command = json.loads(line)
            op = command["op"]
            try:
                result = getattr(driver, op)(**command.get("args", {}))
            except Exception:
                reply({"error": traceback.format_exc()})
                continue
            if op == "stop":
                stopped = True
                reply({"ok": result})
                return 0
            reply({"ok": result})
    finally:
        if not stopped:  # stdin closed or broke: the benchmark is gone; leave nothing behind
            with contextlib.suppress(Exception):
                driver.stop()
    return 0


# -- the benchmark process: drivers, phases ----------------------------------------------


class Driver:
    """A driver process, seen from the benchmark: ``call(op, ...)`` and ``close()``."""

    def __init__(self, backend: str, n: int, label: str, workdir: Path) -> None:
        self.backend, self.label = backend, label
        home = workdir / label
        home.mkdir()
        env = bench.child_env(workdir)
        for name, sub in (
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("IPYTHONDIR", "ipython"),
            ("LOOM_HISTORY_FILE", "loom-history.sqlite"),
            ("DASK_TEMPORARY_DIRECTORY", "dask"),
        ):
            env[name] = str(home / sub)
        self.log = home / "driver.log"
        read_fd, write_fd = os.pipe()
        argv = [sys.executable, __file__, "--driver", backend, str(n), str(write_fd)]
        try:
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(
                    argv,
                    cwd=home,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=[write_fd],
                    start_new_session=True,
                )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.reply_fd = read_fd
        self.pending = b""
        self.tree: dict[int, int] = {}  # pid -> start time, of all the driver started
        self.killed: dict[int, str] = {}  # what had to be killed at the end: command lines
        self.connection_file: str | None = None
        self.stop_sent = False
        try:
            self._read(READY_TIMEOUT_S, "start")
        except BaseException:
            self.close()
            raise

    def call(self, op: str, timeout: float, **args: Any) -> Any:
        """Run ``op`` in the driver; its result. :class:`BenchError` if it fails or hangs."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"op": op, "args": args}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise BenchError(f"{self.label}: the driver is gone{self._tail()}") from None
        result = self._read(timeout, op)
        self._note_tree()
        if op == "start":
            self.connection_file = result["connection_file"]
        return result

    def _note_tree(self) -> None:
        """Remember every process the driver has started, with its start time."""
        for pid in bench.descendants(self.proc.pid):
            started = start_time(pid)
            if started is not None:
                self.tree.setdefault(pid, started)

    def _read(self, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.reply_fd], [], [], left)[0]:
                raise BenchError(
                    f"{self.label}: no answer to {what} within {timeout:g} s{self._tail()}"
                )
            chunk = os.read(self.reply_fd, 1 << 16)
            if not chunk:
                raise BenchError(f"{self.label}: the driver exited during {what}{self._tail()}")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        reply = json.loads(line)
        if "error" in reply:  # the first line says what; then the driver's traceback
            last = reply["error"].strip().splitlines()[-1]
            raise BenchError(f"{self.label}: {what} failed: {last}\n{reply['error']}{self._tail()}")
        return reply["ok"]

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            text = self.log.read_text(errors="replace").strip()
            if text:
                return "\n  its log ends:\n    " + "\n    ".join(text.splitlines()[-15:])
        return ""

    def send_stop(self) -> None:
        """Ask the driver to stop its cluster and exit; :meth:`close` waits for it."""
        self._note_tree()
        if self.proc.poll() is None and not self.stop_sent:
            self.stop_sent = True
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"op": "stop"}\n')
                self.proc.stdin.flush()

    def close(self) -> list[int]:
        """Stop the cluster, end the driver, then SIGKILL by PID every process it started
        that is still alive; those PIDs."""
        try:
            self.send_stop()
            if self.proc.poll() is None:
                with contextlib.suppress(BenchError):
                    self._read(STOP_TIMEOUT_S, "stop")
        finally:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # the driver stops its cluster and exits at EOF
            if bench.wait_gone([self.proc.pid], GONE_TIMEOUT_S):
                bench.sigkill_group(self.proc.pid)
            self.proc.wait(timeout=GONE_TIMEOUT_S)
            os.close(self.reply_fd)
        # Still alive and the same process (not a new one that got a recycled PID): given
        # a moment to finish exiting, then killed.
        alive = sorted(pid for pid, started in self.tree.items() if start_time(pid) == started)
        left = bench.wait_gone(alive, EXIT_GRACE_S) if alive else []
        self.killed = {pid: cmdline(pid) for pid in left}
        for pid in left:
            bench.sigkill_group(pid)
        survivors = bench.wait_gone(left, GONE_TIMEOUT_S)
        if survivors:
            raise BenchError(f"{self.label}: processes {survivors} survived SIGKILL")
        return left


def cmdline(pid: int) -> str:
    """A process's command line, paths shortened to their last part."""
    with contextlib.suppress(OSError):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        return " ".join(Path(a).name if a.startswith("/") else a for a in argv if a)
    return "?"


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat.rsplit(b")", 1)[1].split()[19])


@dataclass
class Samples:
    """Raw samples of one backend, in seconds (and KiB)."""

    start_s: list[float] = field(default_factory=list)
    start16_s: list[float] = field(default_factory=list)
    apply4_s: list[float] = field(default_factory=list)
    apply16_s: list[float] = field(default_factory=list)
    execute_s: list[float] = field(default_factory=list)
    map_per_s: list[float] = field(default_factory=list)
    async_per_s: list[float] = field(default_factory=list)
    push_s: list[float] = field(default_factory=list)
    pull_s: list[float] = field(default_factory=list)
    many_count: int = 0
    many_per_s: list[float] = field(default_factory=list)
    many_rss_mb: list[float] = field(default_factory=list)
    many_kib_per_task: list[float] = field(default_factory=list)
    many_base_mb: float = 0.0


class Failed(Exception):
    """A backend failed (reported, its driver closed); the others are still measured."""


class Run:
    """The phases of one run; drivers are closed (and their processes killed) as it goes.

    A backend that fails (its driver reports an error, hangs or dies) is reported in
    :attr:`errors`, its driver is closed and it sits out the rest of that cluster's
    figures (:attr:`failed`); the other backends are still measured. The 16-engine
    clusters are new ones: every backend gets another chance there.
    """

    def __init__(self, s: Settings, workdir: Path) -> None:
        self.s = s
        self.workdir = workdir
        self.samples = {b: Samples() for b in BACKENDS}
        self.notes: list[str] = []
        self.drivers: dict[str, Driver] = {}  # by key: the backend, or "<backend>-many"
        self.labels = 0
        self.phases: dict[str, float] = {}
        self.phase = ""
        self.errors: dict[str, str] = {}  # "<backend or phase>: <phase>" -> why (exit 1)
        self.failed: dict[str, str] = {}  # backend -> why, for the clusters of this phase

    # -- drivers -------------------------------------------------------------------------

    def open(self, key: str, backend: str, n: int, what: str) -> Driver:
        """A new driver under ``key``; :class:`Failed` if it does not come up."""
        self.labels += 1
        label = f"{self.labels:02d}-{backend}-{what}"
        try:
            self.drivers[key] = Driver(backend, n, label, self.workdir)
        except BenchError as exc:
            self.fail(backend, exc)
            raise Failed(backend) from None
        return self.drivers[key]

    def call(self, key: str, op: str, timeout: float, **args: Any) -> Any:
        """``op`` in the driver under ``key``; :class:`Failed` (reported) if it fails."""
        d = self.drivers[key]
        try:
            return d.call(op, timeout, **args)
        except BenchError as exc:
            self.fail(d.backend, exc, key)
            raise Failed(d.backend) from None

    def fail(self, backend: str, exc: BenchError, key: str | None = None) -> None:
        """Report a backend's failure; close its driver (``key``) and keep it out."""
        print(f"bench_parallel: {self.phase}: {exc}", flush=True)
        why = str(exc).splitlines()[0]
        self.errors.setdefault(f"{backend}: {self.phase}", why)
        self.failed.setdefault(backend, why)
        d = self.drivers.pop(key, None) if key is not None else None
        if d is not None:
            with contextlib.suppress(BenchError):
                self.close(d)

    def live(self, backends: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(b for b in backends if b not in self.failed)

    def close(self, d: Driver) -> None:
        if d.close():
            killed = "; ".join(f"{pid} {cmd}" for pid, cmd in d.killed.items())
            self.notes.append(f"{d.label}: killed what it left running: {killed}")

    def close_key(self, key: str) -> None:
        d = self.drivers.pop(key, None)
        if d is not None:
            self.close(d)

    def close_all(self) -> None:
        """Close every driver; their clusters stop at the same time."""
        drivers, self.drivers = list(self.drivers.values()), {}
        for d in drivers:
            d.send_stop()
        with contextlib.ExitStack() as stack:  # every one is closed, whatever fails
            for d in drivers:
                stack.callback(self.close, d)

    # -- phases --------------------------------------------------------------------------

    def attempt(self, name: str, phase: Callable[[], None]) -> None:
        """Run a phase, timed (for the run's time budget).

        Should the phase itself break (not a backend: those are :class:`Failed`), it is
        reported in :attr:`errors` and its drivers are closed; the run goes on.
        """
        t0 = time.monotonic()
        self.phase = name
        try:
            phase()
        except Exception as exc:
            traceback.print_exc()
            self.errors[f"phase: {name}"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            print(f"bench_parallel: {name}: FAILED: {self.errors[f'phase: {name}']}", flush=True)
            with contextlib.suppress(Exception):
                self.close_all()
        finally:
            self.phases[name] = time.monotonic() - t0

    def run(self) -> None:
        if self.s.arrays_only:
            try:
                self.attempt("steady", self.arrays)
            finally:
                self.close_all()
            return
        if self.s.sixteen_only:
            try:
                self.attempt("16 engines", self.sixteen)
            finally:
                self.close_all()
            return
        if self.s.tasks_only:
            try:
                self.attempt("steady", lambda: self.steady(arrays=False))
                self.attempt("many tasks", self.many_tasks)
            finally:
                self.close_all()
            return
        try:
            self.attempt("startup", self.startup)
            self.failed = {}  # a backend that failed a start trial gets its steady cluster
            self.attempt("steady", self.steady)
            self.attempt("many tasks", self.many_tasks)
            self.close_all()
            if self.s.apply16_calls:
                self.failed = {}
                self.attempt("16 engines", self.sixteen)
        finally:
            self.close_all()

    def startup(self) -> None:
        s = self.s
        if s.startup_warmup:
            rounds: Iterator[tuple[str, bool]] = bench.startup_rounds(BACKENDS, s.startup_trials)
        else:
            rounds = ((b, True) for b in bench.alternating(BACKENDS, s.startup_trials))
        for b, record in rounds:
            if b in self.failed:
                continue
            with contextlib.suppress(Failed):
                self.open(b, b, ENGINES, "start")
                started = self.call(b, "start", START_TIMEOUT_S)
                if record:
                    self.samples[b].start_s.append(started["start_s"])
                if s.startup_warmup:
                    self.close_key(b)
                # quick: this cluster serves the other figures too

    def blocks(
        self, backends: tuple[str, ...], op: str, total: int, warmup: int
    ) -> dict[str, list[float]]:
        """``total`` timed calls of ``op`` per backend in blocks of ``BLOCK``, interleaved;
        the backends that did not fail."""
        out: dict[str, list[float]] = {b: [] for b in backends}
        for b in self.live(backends):
            with contextlib.suppress(Failed):
                self.call(b, op, 60 + 2.0 * warmup, count=warmup)
        blocks = max(1, total // BLOCK)
        for b in bench.alternating(backends, blocks):
            if b not in self.failed:
                with contextlib.suppress(Failed):
                    out[b] += self.call(b, op, 60 + 2.0 * BLOCK, count=total // blocks)
        return {b: v for b, v in out.items() if b not in self.failed}

    def trials(
        self,
        backends: tuple[str, ...],
        op: str,
        trials: int,
        timeout: float,
        warmup: dict[str, Any] | None,
        **args: Any,
    ) -> dict[str, list[float]]:
        """``trials`` results of ``op(**args)`` per backend, interleaved, after a warm-up;
        the backends that did not fail."""
        out: dict[str, list[float]] = {b: [] for b in backends}
        if warmup is not None:
            for b in self.live(backends):
                with contextlib.suppress(Failed):
                    self.call(b, op, timeout, **warmup)
        for b in bench.alternating(backends, trials):
            if b not in self.failed:
                with contextlib.suppress(Failed):
                    out[b].append(self.call(b, op, timeout, **args))
        return {b: v for b, v in out.items() if b not in self.failed}

    def steady(self, arrays: bool = True) -> None:
        s, samples = self.s, self.samples
        for b in BACKENDS:  # long-lived clusters (quick: those of the startup round)
            if b not in self.drivers:
                with contextlib.suppress(Failed):
                    self.open(b, b, ENGINES, "steady")
                    self.call(b, "start", START_TIMEOUT_S)
        for b, v in self.blocks(BACKENDS, "apply", s.apply_calls, s.apply_warmup).items():
            samples[b].apply4_s = v
        for b, v in self.blocks(POOLS, "execute", s.apply_calls, s.apply_warmup).items():
            samples[b].execute_s = v
        timeout = 60 + 0.1 * s.map_tasks
        maps = self.trials(
            BACKENDS, "lb_map", s.map_trials, timeout, {"tasks": WARMUP_TASKS}, tasks=s.map_tasks
        )
        for b, v in maps.items():
            samples[b].map_per_s = [s.map_tasks / t for t in v]
        timeout = 60 + 0.1 * s.async_tasks
        runs = self.trials(
            BACKENDS, "tasks", s.async_trials, timeout, {"count": WARMUP_TASKS}, count=s.async_tasks
        )
        for b, v in runs.items():
            samples[b].async_per_s = [s.async_tasks / t for t in v]
        if arrays:
            self.array_figures()

    def arrays(self) -> None:
        """``--arrays``: a cluster per backend, then only the push and pull figures."""
        for b in BACKENDS:
            with contextlib.suppress(Failed):
                self.open(b, b, ENGINES, "arrays")
                self.call(b, "start", START_TIMEOUT_S)
        self.array_figures()

    def array_figures(self) -> None:
        s, samples = self.s, self.samples
        size = {"nbytes": s.array_bytes}
        warm = size if s.array_warmup else None
        for b, v in self.trials(BACKENDS, "push", s.array_trials, 120, warm, **size).items():
            samples[b].push_s = v
        for b in self.live(BACKENDS):
            with contextlib.suppress(Failed):
                self.call(b, "pull_setup", 120, **size)
        for b, v in self.trials(BACKENDS, "pull", s.array_trials, 120, warm, **size).items():
            samples[b].pull_s = v

    def many_tasks(self) -> None:
        """Per pool: a fresh client process runs N tasks on the 4-engine cluster."""
        files: dict[str, str] = {}
        for b in self.live(POOLS):
            with contextlib.suppress(Failed):
                self.call(b, "disconnect", 30)  # its client would read the tasks' traffic
                files[b] = str(self.drivers[b].connection_file)
        for b, path in files.items():
            nominal = self.s.many_loom if b == "loom" else self.s.many_ipyparallel
            rate = statistics.median(self.samples[b].async_per_s)
            count = min(nominal, max(WARMUP_TASKS, int(rate * self.s.many_cap_s) // 1000 * 1000))
            if count < nominal:
                self.notes.append(
                    f"many tasks, {b}: {count:,} tasks instead of {nominal:,} (at its "
                    f"{rate:,.0f} tasks/s of the {self.s.async_tasks:,}-task figure, "
                    f"{nominal:,} would take {nominal / rate:,.0f} s)"
                )
            key = f"{b}-many"
            try:
                self.open(key, b, ENGINES, "many")
                base_kib = self.call(key, "connect", 120, path=path)
                got = self.call(key, "many", 120 + 0.05 * count, count=count)
                self.call(key, "disconnect", 30)
            except Failed:
                continue
            finally:
                self.close_key(key)
            out = self.samples[b]
            out.many_count = count
            out.many_base_mb = base_kib * 1024 / 1e6
            out.many_per_s = [count / got["elapsed_s"]]
            out.many_rss_mb = [got["hwm_kib"] * 1024 / 1e6]
            out.many_kib_per_task = [(got["hwm_kib"] - got["rss_before_kib"]) / count]

    def sixteen(self) -> None:
        for b in POOLS:
            with contextlib.suppress(Failed):
                self.open(b, b, MANY_ENGINES, "sixteen")
                self.samples[b].start16_s = [self.call(b, "start", START_TIMEOUT_S)["start_s"]]
        calls = self.s.apply16_calls
        for b, v in self.blocks(POOLS, "apply", calls, self.s.apply_warmup).items():
            self.samples[b].apply16_s = v
        self.close_all()


# -- report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One row of the table."""

    key: str  # in BENCH_JSON
    label: str
    unit: str
    scale: float  # displayed = raw sample * scale
    pick: Callable[[Samples], list[float]]
    target: tuple[str, float] | None  # ("max" | "below" | "ratio_min", number); None: none
    higher_is_better: bool = False


FIGURES = (
    Figure("start_s", "start -> 4 engines usable", "s", 1, lambda x: x.start_s, ("max", 0.5)),
    Figure("apply4_ms", "rc[:].apply_sync(zero), 4 engines", "ms", 1e3, lambda x: x.apply4_s,
           ("max", 1.5)),
    Figure("apply16_ms", "rc[:].apply_sync(zero), 16 engines", "ms", 1e3,
           lambda x: x.apply16_s, ("max", 4.0)),
    Figure("start16_s", "start -> 16 engines usable", "s", 1, lambda x: x.start16_s, None),
    Figure("execute_ms", "rc[:].execute('a=1'), 4 engines", "ms", 1e3, lambda x: x.execute_s,
           ("max", 1.5)),
    Figure("map_per_s", "lb map, chunksize 1", "tasks/s", 1, lambda x: x.map_per_s,
           ("ratio_min", 10.0), higher_is_better=True),
    Figure("async_per_s", "single apply_async + get", "tasks/s", 1, lambda x: x.async_per_s,
           ("ratio_min", 10.0), higher_is_better=True),
    Figure("push_s", "push 100 MB to 4 engines", "s", 1, lambda x: x.push_s, ("max", 0.15)),
    Figure("pull_s", "pull 100 MB from 1 engine", "s", 1, lambda x: x.pull_s, ("max", 0.06)),
    Figure("many_per_s", "many single tasks", "tasks/s", 1, lambda x: x.many_per_s,
           ("ratio_min", 5.0), higher_is_better=True),
    Figure("many_rss_mb", "  client peak RSS", "MB", 1, lambda x: x.many_rss_mb,
           ("below", RSS_TARGET_MB)),
    Figure("many_kib_per_task", "  client RSS growth per task", "KiB", 1,
           lambda x: x.many_kib_per_task, None),
)  # fmt: skip


def missing_reasons(s: Settings) -> dict[str, dict[str, str]]:
    """Why a figure has no value for a backend (``—`` in the table)."""
    not_in_issue = "not part of this figure (the issue compares Loom and ipyparallel)"
    reasons: dict[str, dict[str, str]] = {
        "execute_ms": {"dask": "dask has no engine namespace to execute code in"},
        "apply16_ms": {"dask": not_in_issue},
        "start16_s": {"dask": not_in_issue},
        "many_per_s": {"dask": f"{not_in_issue}; at dask's ~600 tasks/s 100,000 take ~3 min"},
        "many_rss_mb": {"dask": "not measured: its client process hosts the scheduler"},
        "many_kib_per_task": {"dask": "not measured: its client process hosts the scheduler"},
    }
    if not s.apply16_calls:
        for key in ("apply16_ms", "start16_s"):
            reasons[key].update({b: "skipped in --quick" for b in POOLS})
    if s.arrays_only:
        for f in FIGURES:
            if f.key not in ("push_s", "pull_s"):
                reasons[f.key] = {b: "not in --arrays" for b in BACKENDS}
    if s.tasks_only:
        for key in ("start_s", "apply16_ms", "start16_s", "push_s", "pull_s"):
            reasons[key] = {b: "not in --tasks" for b in BACKENDS}
    if s.sixteen_only:
        for f in FIGURES:
            if f.key not in ("apply16_ms", "start16_s"):
                reasons[f.key] = {b: "not in --sixteen" for b in BACKENDS}
    return reasons


#: The phases whose failure can leave a figure empty, the figure's own phase first.
FIGURE_PHASES = {
    "start_s": ("startup",),
    "apply16_ms": ("16 engines",),
    "start16_s": ("16 engines",),
    "many_per_s": ("many tasks", "steady"),
    "many_rss_mb": ("many tasks", "steady"),
    "many_kib_per_task": ("many tasks", "steady"),
}


def failure_reasons(
    reasons: dict[str, dict[str, str]], summary: dict[str, dict[str, Any]], errors: dict[str, str]
) -> None:
    """Add to ``reasons`` why a cell is empty because a backend (or a phase) failed."""
    for key, row in summary.items():
        phases = FIGURE_PHASES.get(key, ("steady",))
        for b in BACKENDS:
            if row[b] is not None or b in reasons.get(key, {}):
                continue
            causes = [f"{b}: {p}" for p in phases] + [f"phase: {p}" for p in phases]
            why = next((errors[c] for c in causes if c in errors), "no samples")
            reasons.setdefault(key, {})[b] = f"not measured: {why}"


def summarize(samples: dict[str, Samples]) -> dict[str, dict[str, Any]]:
    """Per figure: unit, the median of each backend (None: not measured), the ratios
    Loom/ipyparallel and Loom/dask, the target and whether Loom met it (None: unmeasured)."""
    out: dict[str, dict[str, Any]] = {}
    loom_many = samples["loom"].many_count
    for f in FIGURES:
        row: dict[str, Any] = {"unit": f.unit, "n": len(f.pick(samples["loom"]))}
        for b in BACKENDS:
            values = f.pick(samples[b])
            row[b] = statistics.median(values) * f.scale if values else None
        loom, ipp, dask = row["loom"], row["ipyparallel"], row["dask"]
        row["ratio"] = loom / ipp if loom is not None and ipp else None
        row["ratio_dask"] = loom / dask if loom is not None and dask else None
        row["target"] = row["met"] = None
        if f.key == "many_rss_mb":  # peaks after different numbers of tasks: no ratio
            row["ratio"] = None
        if f.target is None:
            out[f.key] = row
            continue
        kind, number = f.target
        if kind == "max":
            row["target"] = f"<= {number:g} {f.unit}"
            row["met"] = None if loom is None else loom <= number
        elif kind == "below":
            row["target"] = f"< {number:g} {f.unit} at {NOMINAL_MANY:,} tasks"
            checked = loom
            if loom is not None and loom_many < NOMINAL_MANY:  # extrapolated to 100,000
                per_task_mb = samples["loom"].many_kib_per_task[0] * 1024 / 1e6
                checked = row["loom_at_nominal"] = loom + per_task_mb * (NOMINAL_MANY - loom_many)
            row["met"] = None if checked is None else checked < number
        else:
            row["target"] = f">= {number:g}x ipyparallel"
            row["met"] = None if row["ratio"] is None else row["ratio"] >= number
        out[f.key] = row
    for key in ("many_per_s", "many_rss_mb", "many_kib_per_task"):
        out[key]["tasks"] = {b: samples[b].many_count for b in POOLS}
    return out


def report_lines(
    summary: dict[str, dict[str, Any]],
    samples: dict[str, Samples],
    reasons: dict[str, dict[str, str]],
    array_bytes: int,
) -> Iterator[str]:
    """The table, then the number of tasks behind the many-tasks rows and why a cell is —."""

    def cell(value: float | None, width: int) -> str:
        return f"{'—' if value is None else bench.fmt_value(value):>{width}}"

    def ratio(value: float | None) -> str:
        return f"{'—' if value is None else f'{value:.3f}x':>9}"

    head = (
        f"{'figure':<36} {'n':>4} {'loom':>9} {'ipyparallel':>11} {'dask':>9} "
        f"{'unit':<7} {'loom/ipp':>9} {'loom/dask':>9}  target"
    )
    yield head
    yield "-" * (len(head) + 20)
    size = f"{array_bytes / 1e6:g} MB"
    for f in FIGURES:
        r = summary[f.key]
        label = f.label.replace("100 MB", size)
        target = "(informative)" if r["target"] is None else r["target"]
        if "loom_at_nominal" in r:
            target += f" (extrapolated: {r['loom_at_nominal']:,.0f})"
        verdict = "  MISSED" if r["met"] is False else ""
        yield (
            f"{label:<36} {r['n']:>4} {cell(r['loom'], 9)} {cell(r['ipyparallel'], 11)} "
            f"{cell(r['dask'], 9)} {f.unit:<7} {ratio(r['ratio'])} "
            f"{ratio(r['ratio_dask'])}  {target}{verdict}"
        )
    measured = [b for b in POOLS if samples[b].many_count]
    if measured:
        counts = ", ".join(f"{b} {samples[b].many_count:,}" for b in measured)
        bases = ", ".join(f"{b} {samples[b].many_base_mb:,.0f} MB" for b in measured)
        yield f"many single tasks: N = {counts} (the ratio compares rates; see the docstring)"
        yield f"  client RSS before the first task (after connecting and 10 tasks): {bases}"
    why_empty: dict[tuple[str, str], list[str]] = {}  # (backend, reason) -> figures
    for f in FIGURES:
        for b, why in reasons.get(f.key, {}).items():
            why_empty.setdefault((b, why), []).append(f.label.strip().replace("100 MB", size))
    for (b, why), labels in why_empty.items():
        yield f"— {b}: {'; '.join(labels)}: {why}"


def main() -> int:
    if sys.argv[1:2] == ["--driver"]:  # a driver process (see ``Driver``)
        backend, n, reply_fd = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        return driver_main(backend, n, reply_fd)
    # --arrays is this benchmark's own flag (bench.start_run parses --quick only).
    arrays_only = "--arrays" in sys.argv[1:]
    if arrays_only:
        sys.argv.remove("--arrays")
    tasks_only = "--tasks" in sys.argv[1:] and not arrays_only
    if tasks_only:
        sys.argv.remove("--tasks")
    sixteen_only = "--sixteen" in sys.argv[1:] and not (arrays_only or tasks_only)
    if sixteen_only:
        sys.argv.remove("--sixteen")
    quick, s = bench.start_run("bench_parallel", __doc__, QUICK, FULL)
    if arrays_only:
        s = dataclasses.replace(s, arrays_only=True)
        print(f"bench_parallel: --arrays (LOOM_SHM={os.environ.get('LOOM_SHM', '')!r})")
    if tasks_only:
        s = dataclasses.replace(s, tasks_only=True, apply16_calls=0)
        print(f"bench_parallel: --tasks (LOOM_RECORDS={os.environ.get('LOOM_RECORDS', '')!r})")
    if sixteen_only:
        s = dataclasses.replace(s, sixteen_only=True, apply16_calls=FULL.apply16_calls)
        print(f"bench_parallel: --sixteen (LOOM_RECORDS={os.environ.get('LOOM_RECORDS', '')!r})")
    bench.become_subreaper()
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="loom-bench-") as tmp:
            run = Run(s, Path(tmp))
            run.run()  # a phase that fails is in run.errors; the others are measured
    except Exception as exc:  # the benchmark itself broke: say why
        traceback.print_exc()
        print(f"bench_parallel: FAILED: {type(exc).__name__}: {exc}", flush=True)
        return 1
    finally:
        left = bench.descendants(os.getpid())
        for pid in left:
            bench.sigkill_group(pid)
        bench.wait_gone(left, GONE_TIMEOUT_S)
        if left:
            print(f"bench_parallel: killed leftover processes {left}", flush=True)
    reasons = missing_reasons(s)
    summary = summarize(run.samples)
    failure_reasons(reasons, summary, run.errors)
    for line in report_lines(summary, run.samples, reasons, s.array_bytes):
        print(line)
    for note in run.notes:
        print(f"note: {note}")
    for name, why in run.errors.items():
        print(f"FAILED {name}: {why}")
    phases = ", ".join(f"{name} {took:.0f} s" for name, took in run.phases.items())
    load = os.getloadavg()[0]
    print(f"run took {time.monotonic() - started:.0f} s ({phases}); load average now {load:.2f}")
    print(bench.machine_state.measure().line(), flush=True)
    bench.print_bench_json(
        {
            "benchmark": "parallel",
            "quick": quick,
            "engines": ENGINES,
            "metrics": summary,
            "missing": reasons,
            "notes": run.notes,
            "errors": run.errors,
        }
    )
    return 1 if run.errors else 0


if __name__ == "__main__":
    sys.exit(main())
