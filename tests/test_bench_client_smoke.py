"""``bench_client.py --quick`` runs and reports: a smoke run, checking its ``BENCH_JSON``.

This proves only that the benchmark works (starts ipykernel, drives it with both
clients, cleans up and prints a parsable report), never how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "benchmarks" / "bench_client.py"


@pytest.mark.peer
@pytest.mark.timeout(150)
def test_bench_client_quick(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    assert len(lines) == 1, proc.stdout
    report = json.loads(lines[0].removeprefix("BENCH_JSON "))
    assert report["benchmark"] == "client"
    assert report["quick"] is True
    metric = report["metrics"]["execute_pass_ms"]
    for field in ("loom", "jupyter_client", "jupyter_client_interactive", "jupyter_client_loop"):
        assert isinstance(metric[field], int | float), (field, metric)
        assert metric[field] > 0, (field, metric)
    assert metric["jupyter_client"] == min(
        metric["jupyter_client_interactive"], metric["jupyter_client_loop"]
    )
    assert metric["jupyter_client_way"] in ("jc_interactive", "jc_loop")
    assert metric["ratio"] == pytest.approx(metric["loom"] / metric["jupyter_client"])
    assert isinstance(metric["met"], bool)
    assert ("MISSED" in proc.stdout) is not metric["met"]
    assert metric["n"] > 0
