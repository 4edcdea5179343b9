"""The benchmarks run and report: ``--quick`` smoke runs, checking their ``BENCH_JSON``.

This proves only that each benchmark works (starts its processes, measures, cleans up
and prints a parsable report), never how fast anything is: speed lives in the printed
ratios. One test per ``tests/benchmarks/bench_*.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent / "benchmarks"

KERNEL_METRICS = {
    "startup_s",
    "execute_pass_ms",
    "stdout_lines_per_s",
    "complete_import_ms",
    "complete_attr_ms",
    "idle_rss_mib",
}
CONSOLE_METRICS = ("start_s", "enter_pass_ms", "lines_20k_s")


@pytest.fixture(scope="module", autouse=True)
def _one_bytecode_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One ``$LOOM_BENCH_PYCACHE`` for all the runs, as ``run_all.py`` gives them: each run
    would otherwise compile everything its processes import (``_bench_common.child_env``),
    tens of seconds of CPU a run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOOM_BENCH_PYCACHE", str(tmp_path_factory.mktemp("pycache")))
        yield


def run_quick(
    name: str, cwd: Path, timeout: float, *, script: str = "", args: Iterable[str] = ()
) -> tuple[str, dict[str, Any]]:
    """Run ``benchmarks/bench_<name>.py --quick`` (or ``script`` with ``args`` too) from
    ``cwd``: its stdout and ``BENCH_JSON``.

    The benchmark must exit 0 within ``timeout`` seconds and print exactly one
    ``BENCH_JSON`` line: a JSON object that names it and says it was a quick run.
    """
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / (script or f"bench_{name}.py")), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    assert len(lines) == 1, proc.stdout
    report = json.loads(lines[0].removeprefix("BENCH_JSON "))
    assert isinstance(report, dict)
    assert report["benchmark"] == name
    assert report["quick"] is True
    return proc.stdout, report


def assert_positive(metrics: dict[str, Any], names: Iterable[str], fields: Iterable[str]) -> None:
    """Every ``metrics[name][field]`` is a number above 0."""
    for name in names:
        for field in fields:
            value = metrics[name][field]
            assert isinstance(value, int | float), (name, field, value)
            assert value > 0, (name, field, value)


@pytest.mark.peer
@pytest.mark.timeout(150)
def test_bench_kernel_quick_reports_every_metric(tmp_path: Path) -> None:
    _, report = run_quick("kernel", tmp_path, timeout=120)
    metrics = report["metrics"]
    assert isinstance(metrics, dict)
    assert set(metrics) >= KERNEL_METRICS
    assert_positive(metrics, KERNEL_METRICS, ("loom", "ipykernel", "ratio"))


@pytest.mark.peer
@pytest.mark.timeout(150)
def test_bench_client_quick(tmp_path: Path) -> None:
    stdout, report = run_quick("client", tmp_path, timeout=120)
    fields = ("loom", "jupyter_client", "jupyter_client_interactive", "jupyter_client_loop")
    assert_positive(report["metrics"], ["execute_pass_ms"], fields)
    metric = report["metrics"]["execute_pass_ms"]
    assert metric["jupyter_client"] == min(
        metric["jupyter_client_interactive"], metric["jupyter_client_loop"]
    )
    assert metric["jupyter_client_way"] in ("jc_interactive", "jc_loop")
    assert metric["ratio"] == pytest.approx(metric["loom"] / metric["jupyter_client"])
    assert isinstance(metric["met"], bool)
    assert ("MISSED" in stdout) is not metric["met"]
    assert metric["n"] > 0


@pytest.mark.peer
@pytest.mark.timeout(300)
def test_bench_console_quick(tmp_path: Path) -> None:
    """The ratios and ``MISSED`` markers are not checked, so a loaded machine cannot fail it."""
    stdout, report = run_quick("console", tmp_path, timeout=240)
    assert report["kernel"] == "python3"
    metrics = report["metrics"]
    assert_positive(metrics, CONSOLE_METRICS, ("loom", "jupyter_console", "ratio"))
    for name in CONSOLE_METRICS:
        assert isinstance(metrics[name]["met"], bool), (name, metrics[name])
    assert report["output_complete"]["python3"] is True, stdout
    alone = report["kernel_alone"]["python3"]  # the kernel's own time: the floor
    assert sorted(alone) == ["enter_pass_ms", "lines_20k_join_s", "lines_20k_s"]
    assert_positive(alone, list(alone), ("loom", "jupyter_console", "ratio"))
    assert "the kernel alone, output discarded" in stdout


PARALLEL_FIGURES = ("start_s", "apply4_ms", "map_per_s", "async_per_s", "push_s", "pull_s")
PARALLEL_POOL_ONLY = ("execute_ms", "many_per_s", "many_rss_mb", "many_kib_per_task")


@pytest.mark.peer
@pytest.mark.timeout(300)
def test_bench_parallel_quick(tmp_path: Path) -> None:
    """Loom, ipyparallel and dask each measured; the cells dask cannot fill say why."""
    stdout, report = run_quick("parallel", tmp_path, timeout=240)
    metrics = report["metrics"]
    assert_positive(metrics, PARALLEL_FIGURES, ("loom", "ipyparallel", "dask", "ratio"))
    assert_positive(metrics, PARALLEL_POOL_ONLY, ("loom", "ipyparallel"))
    for name in (*PARALLEL_FIGURES, *PARALLEL_POOL_ONLY):
        row = metrics[name]
        if row["ratio"] is not None:
            assert row["ratio"] == pytest.approx(row["loom"] / row["ipyparallel"]), name
    for name in ("execute_ms", "many_per_s"):
        assert metrics[name]["dask"] is None
        assert report["missing"][name]["dask"], name
    assert metrics["apply16_ms"]["loom"] is None  # not in a quick run
    assert report["missing"]["apply16_ms"]["loom"] == "skipped in --quick"
    verdicts = [row["met"] for row in metrics.values() if row["target"] is not None]
    for row in metrics.values():  # a target Loom was measured for has a verdict
        if row["target"] is not None:
            assert isinstance(row["met"], bool) is (row["loom"] is not None), row
    assert ("MISSED" in stdout) is (False in verdicts)
    assert metrics["many_per_s"]["tasks"]["loom"] > 0


PX_FIGURES = ("px_ms", "execute_ms", "enter_px_ms", "flood_s", "flood_prompt_s")


@pytest.mark.peer
@pytest.mark.timeout(420)
def test_bench_px_quick(tmp_path: Path) -> None:
    """%px: Loom's kernel, pool and console, and ipykernel, ipyparallel and jupyter console,
    each measured; every process the run started is gone (it says so if it had to kill)."""
    stdout, report = run_quick("px", tmp_path, timeout=400)
    metrics = report["metrics"]
    assert_positive(metrics, PX_FIGURES, ("loom", "ipyparallel", "ratio"))
    for name in PX_FIGURES:
        row = metrics[name]
        assert row["ratio"] == pytest.approx(row["loom"] / row["ipyparallel"]), name
    assert "processes still alive" not in stdout


@pytest.mark.peer
@pytest.mark.timeout(360)
def test_bench_durable_quick(tmp_path: Path) -> None:
    """Loom's records (memory, SQLite, sync) and ipyparallel's hub DBs each measured."""
    _, report = run_quick("durable", tmp_path, timeout=340)
    assert report["failed"] == {}
    figures = ("tasks_per_s", "apply_ms", "ctl_us", "eng_us")
    configs = ("loom-memory", "loom-db", "loom-sync", "ipp-nodb", "ipp-dictdb", "ipp-sqlite")
    assert_positive(report["results"], configs, figures)
    # Without records the controller has nothing to do per task: its CPU may round to 0.
    assert_positive(report["results"], ("loom-off",), ("tasks_per_s", "apply_ms", "eng_us"))
    assert report["results"]["loom-off"]["ctl_us"] >= 0
    ratio = report["ratios"]["SQLite: Loom / ipyparallel"]["apply_ms"]
    loom, ipp = report["results"]["loom-db"], report["results"]["ipp-sqlite"]
    assert ratio == pytest.approx(loom["apply_ms"] / ipp["apply_ms"])


@pytest.mark.timeout(150)
def test_bench_security_quick(tmp_path: Path) -> None:
    out, report = run_quick("security", tmp_path, timeout=140)
    assert report["peer"] == "plaintext"
    metrics = report["metrics"]
    assert_positive(metrics, ("apply4_ms", "push_ms", "start_s"), ("loom", "plain", "ratio"))
    assert metrics["apply4_ms"]["target"] == "<= 1.3x"
    assert "Curve (loom) vs plaintext" in out


@pytest.mark.peer
@pytest.mark.timeout(200)
def test_bench_launchers_quick(tmp_path: Path) -> None:
    """MPI only in a quick run (the full run adds Slurm); skipped where Open MPI is not."""
    out, report = run_quick("launchers", tmp_path, timeout=180)
    if "skipped" in report:
        pytest.skip(f"bench_launchers: {out.splitlines()[-2]}")
    metrics = report["metrics"]
    assert_positive(metrics, ("mpi_start_s", "mpi_stop_s"), ("loom", "ipyparallel", "ratio"))
    assert metrics["mpi_start_s"]["target"] == "<= 0.2x"


@pytest.mark.timeout(120)
def test_probe_floor16_quick(tmp_path: Path) -> None:
    """The floor probe (a measurement aid, not a benchmark) times all three contenders."""
    _, report = run_quick(
        "probe_floor16", tmp_path, 100, script="probe_floor16.py", args=["--engines", "2"]
    )
    assert report["engines"] == 2
    medians = report["median_ms"]
    assert set(medians) == {"loom", "bare engines", "bare both"}
    assert all(isinstance(ms, float) and ms > 0 for ms in medians.values()), medians


@pytest.mark.timeout(60)
def test_machine_state_line_measures_and_restores_affinity() -> None:
    """Every run's second line: wake-ups on one CPU and across two, and a Python loop,
    each a time above 0; the process's CPUs are its own again afterwards."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import _machine_state as machine_state
    finally:
        sys.path.remove(str(BENCHMARKS))
    before = os.sched_getaffinity(0)
    state = machine_state.measure()
    assert os.sched_getaffinity(0) == before
    assert state.wake_same_us is not None
    assert state.wake_same_us > 0
    if len(before) > 1:
        assert state.wake_cross_us is not None
        assert state.wake_cross_us > 0
    else:
        assert state.wake_cross_us is None
    assert state.python_ms > 0
    line = state.line()
    assert line.startswith("machine now: pipe round trip ")
    assert "across CPUs" in line
