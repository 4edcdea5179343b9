"""Loom's MPI and Slurm launchers against ipyparallel's own, in one run: start -> 4 engines usable.

For each launcher (``mpi``: one ``mpiexec`` of Open MPI; ``slurm``: one ``sbatch`` job on a
one-node Slurm this script starts) and each backend (Loom's ``parallel``, ipyparallel 9),
a fresh *driver* process (this script with ``--driver BACKEND LAUNCHER``) that has already
imported its library times ``Cluster(n=4, engines=LAUNCHER)``, ``start_and_connect_sync()``
and ``rc[:].apply_sync(zero)`` returning from all four engines (the figure, ``start_s``),
then ``stop_cluster_sync()`` (``stop_s``, informative). Both backends run on the same
daemons with the same environment: Open MPI's ``OMPI_ALLOW_RUN_AS_ROOT`` pair (as root)
and ``OMPI_MCA_rmaps_base_oversubscribe=1`` (4 ranks on 2 cores), ``SLURM_CONF`` naming
the test Slurm. ipyparallel's controller binds 127.0.0.1 (its default), Loom's tcp on
127.0.0.1 (its launchers' default; Curve off on loopback), so both run their engines on
this one node.

The Slurm is ``tests/parallel/_launch_fixtures.slurm``: the test fixture's
``slurm.conf`` (``SchedulerParameters=batch_sched_delay=0,sched_min_interval=0``, as
../shared/CLUSTER-TESTBED.md explains; otherwise defaults), ``auth/none``, slurmctld and
slurmd started by pid and stopped after, every job cancelled.

One discarded warm-up round, then interleaved rounds (the order of backends reversed every
other round); every figure is a median, the ratio Loom/ipyparallel, the target issue 12's
(<= 0.2x). This process is a child subreaper: after each driver, whatever it left (a
controller, ``mpiexec``, engines, ``srun``) is SIGKILLed by pid and waited for. A driver's
output goes to a log, whose tail is shown if it fails.

Needs root (the Slurm daemons), Open MPI's ``mpiexec``, Slurm, ``mpi4py`` and ipyparallel;
without them it says what is missing, prints a ``BENCH_JSON`` with ``skipped`` and exits 0.
``--quick`` (the CI smoke run): MPI only (no Slurm daemons), no warm-up round, one round.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bench

LAUNCHERS = ("mpi", "slurm")
BACKENDS = ("loom", "ipyparallel")
MODULES = {"loom": "parallel", "ipyparallel": "ipyparallel"}
N = 4
TARGET = 0.2
#: Seconds one driver may take (start, apply, stop) before it counts as hung.
DRIVER_TIMEOUT = 180.0


def driver_main(backend: str, launcher: str) -> int:
    """Start a cluster of N engines with ``launcher``, apply on all, stop; print JSON."""
    import importlib

    ipp = importlib.import_module(MODULES[backend])
    ipp.Cluster, ipp.Client  # noqa: B018 (Loom's names load lazily: now)
    t0 = time.perf_counter()
    cluster = ipp.Cluster(n=N, engines=launcher)
    try:
        rc = cluster.start_and_connect_sync()
        result = rc[:].apply_sync(lambda: 0)
        start_s = time.perf_counter() - t0
        if result != [0] * N:
            print(f"apply on all engines returned {result!r}", file=sys.stderr)
            return 1
    finally:
        t1 = time.perf_counter()
        cluster.stop_cluster_sync()
        stop_s = time.perf_counter() - t1
    print("RESULT " + json.dumps({"start_s": start_s, "stop_s": stop_s}), flush=True)
    return 0


def missing(launchers: tuple[str, ...]) -> list[str]:
    """What this machine lacks to run the benchmark."""
    tools = ["mpiexec", *(["sbatch", "slurmctld", "slurmd"] if "slurm" in launchers else [])]
    lacks = [f"{tool} (not on PATH)" for tool in tools if shutil.which(tool) is None]
    for module in ("mpi4py", "ipyparallel"):
        try:
            __import__(module)
        except ImportError:
            lacks.append(f"{module} (not installed)")
    if "slurm" in launchers and os.geteuid() != 0:
        lacks.append("root (the Slurm daemons)")
    return lacks


def run_driver(
    backend: str, launcher: str, env: dict[str, str], workdir: Path, daemons: set[int]
) -> dict[str, float]:
    """One driver, to its end; its RESULT, or RuntimeError with the tail of its log."""
    own = workdir / f"{launcher}-{backend}-{time.monotonic_ns()}"
    own.mkdir()
    env = {
        **env,
        "JUPYTER_RUNTIME_DIR": str(own / "runtime"),
        "IPYTHONDIR": str(own / "ipython"),
        "LOOM_HISTORY_FILE": str(own / "history.sqlite"),
    }
    log = own / "driver.log"
    argv = [sys.executable, "-P", __file__, "--driver", backend, launcher]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=own, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        code = proc.wait(DRIVER_TIMEOUT)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        bench.sigkill_group(proc.pid)
        proc.wait(10)
        # Not the Slurm daemons (this process's children too) nor what they run: a job
        # left behind is cancelled, and its tasks killed, by ``clean_slurm``.
        keep = {pid for daemon in daemons for pid in (daemon, *bench.descendants(daemon))}
        left = [pid for pid in bench.descendants(os.getpid()) if pid not in keep]
        for pid in left:
            bench.sigkill_group(pid)
        if still := bench.wait_gone(left, 20.0):
            raise RuntimeError(f"processes left by the {backend} {launcher} driver: {still}")
    if "SLURM_CONF" in env:
        clean_slurm(env)
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    if code != 0 or not lines:
        how = "hung" if code is None else f"exited with {code}"
        shown = text if len(text) < 4000 else f"{text[:1500]}\n[...]\n{text[-2500:]}"
        raise RuntimeError(f"{backend} {launcher} driver {how}; its output:\n{shown}")
    result: dict[str, float] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def fixtures() -> Any:
    """``tests/parallel/_launch_fixtures``: the test Slurm (``slurm``, ``slurm_steps``)."""
    import importlib

    folder = str(bench.REPO / "tests" / "parallel")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("_launch_fixtures")


def clean_slurm(env: dict[str, str]) -> None:
    """Cancel any job a driver left on the test Slurm and kill its tasks by pid."""
    conf = Path(env["SLURM_CONF"])
    if fixtures().slurm_steps(conf, tasks_only=True):
        subprocess.run(["scancel", "--full", "--partition", "debug"], env=env, timeout=30)
        for pid in fixtures().slurm_steps(conf, tasks_only=True):
            bench.sigkill_group(pid)


@contextlib.contextmanager
def running_slurm(workdir: Path, env: dict[str, str]) -> Iterator[set[int]]:
    """The test Slurm, ``SLURM_CONF`` in ``env``; yields its daemons' pids."""
    (workdir / "slurm").mkdir()
    t_phase = time.perf_counter()
    with fixtures().slurm(workdir / "slurm") as conf:
        env["SLURM_CONF"] = str(conf)
        print(f"slurm up in {time.perf_counter() - t_phase:.1f} s", flush=True)
        yield set(bench.descendants(os.getpid()))  # slurmctld, slurmscriptd, slurmd


def main() -> int:
    quick, rounds = bench.start_run("bench_launchers", __doc__, quick=1, full=5)
    launchers = LAUNCHERS[:1] if quick else LAUNCHERS  # CI smoke: MPI only (no daemons)
    lacks = missing(launchers)
    if lacks:
        print(f"skipped: this machine lacks {', '.join(lacks)}")
        bench.print_bench_json({"benchmark": "launchers", "quick": quick, "skipped": lacks})
        return 0
    bench.become_subreaper()

    samples: dict[str, dict[str, list[dict[str, float]]]] = {
        launcher: {backend: [] for backend in BACKENDS} for launcher in launchers
    }
    with tempfile.TemporaryDirectory(prefix="bench-launchers-") as tmp:
        workdir = Path(tmp)
        env = bench.child_env(workdir)
        env.update(OMPI_MCA_rmaps_base_oversubscribe="1")
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        env.pop("SLURM_CONF", None)
        slurm: contextlib.AbstractContextManager[set[int]] = (
            running_slurm(workdir, env) if "slurm" in launchers else contextlib.nullcontext(set())
        )
        with slurm as daemons:
            warmup = 0 if quick else 1
            for round_no in range(warmup + rounds):
                order = BACKENDS if round_no % 2 else BACKENDS[::-1]
                for launcher in launchers:
                    for backend in order:
                        result = run_driver(backend, launcher, env, workdir, daemons)
                        tag = "warm-up" if round_no < warmup else f"round {round_no - warmup + 1}"
                        print(
                            f"{tag}: {launcher:5} {backend:11} start {result['start_s']:.2f} s"
                            f", stop {result['stop_s']:.2f} s",
                            flush=True,
                        )
                        if round_no >= warmup:
                            samples[launcher][backend].append(result)
    report: dict[str, Any] = {"benchmark": "launchers", "quick": quick, "metrics": {}}
    print()
    print(f"{'start -> 4 engines usable':<28} {'n':>2} {'loom':>8} {'ipyparallel':>12} "
          f"{'ratio':>7}  target")  # fmt: skip
    for launcher in launchers:
        for figure in ("start_s", "stop_s"):
            loom = statistics.median(r[figure] for r in samples[launcher]["loom"])
            peer = statistics.median(r[figure] for r in samples[launcher]["ipyparallel"])
            ratio = loom / peer
            target = TARGET if figure == "start_s" else None
            met = None if target is None else ratio <= target
            verdict = "(informative)" if target is None else f"<= {target}x"
            label = f"{launcher} {'start' if figure == 'start_s' else 'stop'}"
            print(
                f"{label:<28} {len(samples[launcher]['loom']):>2} {loom:>7.2f}s "
                f"{peer:>11.2f}s {ratio:>6.3f}x  {verdict}{'  MISSED' if met is False else ''}"
            )
            report["metrics"][f"{launcher}_{figure}"] = {
                "unit": "s", "loom": loom, "ipyparallel": peer, "ratio": ratio,
                "target": None if target is None else f"<= {target}x", "met": met,
                "n": len(samples[launcher]["loom"]),
            }  # fmt: skip
    bench.print_bench_json(report)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--driver":
        sys.exit(driver_main(sys.argv[2], sys.argv[3]))
    sys.exit(main())
