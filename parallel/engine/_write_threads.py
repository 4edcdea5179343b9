"""Run a reply's file writes at once, one thread per write (``SharedDir.stage_split``).

A large reply for a client on this host is written into the cluster's shared memory
before the reply leaves. One write into one tmpfs file holds the file's lock, so it fills
at one thread's speed whatever the cores; split into files written by one thread each,
100 MB took ~30 ms instead of ~47 on 2 cores. The engine's main thread waits for them
either way (the reply cannot leave before its data is written), so the threads add no
concurrency the engine must reason about: they start, write, and are joined here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

__all__ = ["run_at_once", "write_parts"]

#: Parts beyond this many cores did not write faster (4 files on 2 cores: as 2).
_MOST_PARTS = 4


def write_parts() -> int:
    """Into how many files a large reply is split: this process's cores, up to 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(_MOST_PARTS, cores))


def run_at_once(calls: Sequence[Callable[[], None]]) -> None:
    """Run ``calls``, the first on this thread and each other on a thread of its own;
    return when all have finished, raising the first exception any of them raised."""
    failures: list[BaseException] = []

    def guarded(call: Callable[[], None]) -> None:
        try:
            call()
        except BaseException as exc:  # joined below and raised on the caller's thread
            failures.append(exc)

    threads = [
        threading.Thread(target=guarded, args=(call,), name="loom-shm-write", daemon=True)
        for call in calls[1:]
    ]
    for thread in threads:
        thread.start()
    try:
        if calls:
            guarded(calls[0])
    finally:
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
