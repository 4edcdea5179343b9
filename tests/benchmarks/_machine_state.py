"""How fast this machine is right now, in three numbers a benchmark prints beside its figures.

Not a benchmark (``run_all.py`` runs only ``bench_*.py``). On the shared virtual machines
these benchmarks run on, the same build's figures move by half or more within minutes
(the host's other guests), and a thread woken on the other CPU can take ten times as
long to run as one woken on its own: cross-process figures such as a 16-engine broadcast
depend on both. So each run says what the machine was like when it started and ended:

- ``wake_same_us``: a one-byte pipe round trip between two processes on one CPU (two
  wake-ups, two context switches), median of 3 runs of 2,000;
- ``wake_cross_us``: the same with the two processes on different CPUs, where a wake-up
  of an idle CPU is an interrupt to another (virtual) CPU; None on a one-CPU machine;
- ``python_ms``: a fixed loop of dict and str work in this process, median of 5.

Linux (``os.sched_setaffinity``, ``os.fork``); elsewhere the wake-up figures are None.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

__all__ = ["MachineState", "measure"]

ROUND_TRIPS = 2000


@dataclass(frozen=True)
class MachineState:
    wake_same_us: float | None
    wake_cross_us: float | None
    python_ms: float

    def line(self) -> str:
        def us(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.1f} us"

        return (
            f"machine now: pipe round trip {us(self.wake_same_us)} on one CPU,"
            f" {us(self.wake_cross_us)} across CPUs; Python loop {self.python_ms:.1f} ms"
        )


def measure() -> MachineState:
    """This machine's state now (about a second)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    same = cross = None
    if cpus and hasattr(os, "fork"):
        same = statistics.median(_round_trip_us(cpus[0], cpus[0]) for _ in range(3))
        if len(cpus) > 1:
            cross = statistics.median(_round_trip_us(cpus[0], cpus[1]) for _ in range(3))
    return MachineState(same, cross, statistics.median(_python_loop_ms() for _ in range(5)))


def _round_trip_us(parent_cpu: int, child_cpu: int) -> float:
    """Microseconds per pipe round trip between this process on ``parent_cpu`` and a
    forked child on ``child_cpu``."""
    mask = os.sched_getaffinity(0)
    to_child, from_child = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: echo each byte, then leave without any cleanup of the parent's
        try:
            os.sched_setaffinity(0, {child_cpu})
            for _ in range(ROUND_TRIPS):
                os.read(to_child[0], 1)
                os.write(from_child[1], b"x")
        finally:
            os._exit(0)
    try:
        os.sched_setaffinity(0, {parent_cpu})
        started = time.perf_counter()
        for _ in range(ROUND_TRIPS):
            os.write(to_child[1], b"x")
            os.read(from_child[0], 1)
        elapsed = time.perf_counter() - started
    finally:
        os.sched_setaffinity(0, mask)
        for fd in (*to_child, *from_child):
            os.close(fd)
        os.waitpid(pid, 0)
    return elapsed / ROUND_TRIPS * 1e6


def _python_loop_ms() -> float:
    started = time.perf_counter()
    table: dict[int, str] = {}
    for i in range(200_000):
        table[i % 1000] = str(i)
    return (time.perf_counter() - started) * 1e3
