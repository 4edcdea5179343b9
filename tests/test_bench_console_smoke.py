"""``bench_console.py --quick`` runs and reports: a smoke run, checking its ``BENCH_JSON``.

This proves only that the benchmark works (drives ``loom`` and ``jupyter console`` in a
pty, cleans up and prints a parsable report), never how fast anything is: the ratios
and ``MISSED`` markers are not checked, so a loaded machine cannot fail it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "benchmarks" / "bench_console.py"
METRICS = ("start_s", "enter_pass_ms", "lines_20k_s")


@pytest.mark.peer
@pytest.mark.timeout(300)
def test_bench_console_quick(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    assert len(lines) == 1, proc.stdout
    report = json.loads(lines[0].removeprefix("BENCH_JSON "))
    assert report["benchmark"] == "console"
    assert report["quick"] is True
    assert report["kernel"] == "python3"
    metrics = report["metrics"]
    for name in METRICS:
        for field in ("loom", "jupyter_console", "ratio"):
            value = metrics[name][field]
            assert isinstance(value, int | float), (name, field, value)
            assert value > 0, (name, field, value)
        assert isinstance(metrics[name]["met"], bool), (name, metrics[name])
    assert report["output_complete"]["python3"] is True, proc.stdout
