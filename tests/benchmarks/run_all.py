"""Run every ``bench_*.py`` in this folder in turn, forwarding the command-line arguments.

``python tests/benchmarks/run_all.py [--quick]``. Each benchmark runs in its own
interpreter (``sys.executable``) and prints its own table and ``BENCH_JSON`` line.
Exits non-zero if any benchmark could not run (a benchmark exits 0 even when it misses
a target: those are reported as ``MISSED`` in its table).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed: list[str] = []
    scripts = sorted(HERE.glob("bench_*.py"))
    for script in scripts:
        print(f"=== {script.name} {' '.join(sys.argv[1:])}".rstrip(), flush=True)
        code = subprocess.run([sys.executable, str(script), *sys.argv[1:]], check=False).returncode
        if code != 0:
            failed.append(f"{script.name} (exit {code})")
    if failed:
        print(f"=== failed: {', '.join(failed)}", flush=True)
        return 1
    print(f"=== {len(scripts)} benchmark(s) done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
