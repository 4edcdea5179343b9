"""Run every ``bench_*.py`` in this folder in turn, forwarding the command-line arguments.

``python tests/benchmarks/run_all.py [--quick]``. Each benchmark runs in its own
interpreter (``sys.executable``) and prints its own table and ``BENCH_JSON`` line.
Exits non-zero if any benchmark could not run (a benchmark exits 0 even when it misses
a target: those are reported as ``MISSED`` in its table).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _bench_common import PYCACHE_ENV  # noqa: E402


def main() -> int:
    failed: list[str] = []
    scripts = sorted(HERE.glob("bench_*.py"))
    with tempfile.TemporaryDirectory(prefix="loom-bench-pycache-") as pycache:
        # One bytecode cache for the series (_bench_common.child_env): each script would
        # otherwise compile, in a fresh one, everything its processes import.
        env = {**os.environ, PYCACHE_ENV: os.environ.get(PYCACHE_ENV) or pycache}
        for script in scripts:
            print(f"=== {script.name} {' '.join(sys.argv[1:])}".rstrip(), flush=True)
            argv = [sys.executable, str(script), *sys.argv[1:]]
            code = subprocess.run(argv, env=env, check=False).returncode
            if code != 0:
                failed.append(f"{script.name} (exit {code})")
    if failed:
        print(f"=== failed: {', '.join(failed)}", flush=True)
        return 1
    print(f"=== {len(scripts)} benchmark(s) done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
