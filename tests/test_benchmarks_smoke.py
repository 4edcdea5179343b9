"""The benchmarks run and report: ``--quick`` smoke runs, checking their ``BENCH_JSON``.

This proves only that each benchmark works (starts both kernels, measures, cleans up and
prints a parsable report), never how fast anything is: speed lives in the printed ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def _bench_json(stdout: str) -> dict[str, object]:
    lines = [line for line in stdout.splitlines() if line.startswith("BENCH_JSON ")]
    assert len(lines) == 1, stdout
    report = json.loads(lines[0].removeprefix("BENCH_JSON "))
    assert isinstance(report, dict)
    return report


@pytest.mark.peer
@pytest.mark.timeout(150)
def test_bench_kernel_quick_reports_every_metric(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_kernel.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = _bench_json(proc.stdout)["metrics"]
    assert isinstance(metrics, dict)
    assert set(metrics) >= KERNEL_METRICS
    for name in KERNEL_METRICS:
        for field in ("loom", "ipykernel", "ratio"):
            value = metrics[name][field]
            assert isinstance(value, int | float), (name, field, value)
            assert value > 0, (name, field, value)
