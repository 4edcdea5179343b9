"""Run a reply's file writes at once, one thread per write (``SharedDir.stage_split``).

A large reply for a client on this host is written into the cluster's shared memory
before the reply leaves. One write into one tmpfs file holds the file's lock, so it fills
at one thread's speed whatever the cores; split into files written by one thread each,
100 MB took ~30 ms instead of ~47 on 2 cores. The engine's main thread waits for them
either way (the reply cannot leave before its data is written), so the threads add no
concurrency the engine must reason about: they start, write, and are waited for here.
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
    return when all have finished, raising the first exception any of them raised (an
    interrupt before any other).

    Not before all have finished, even when interrupted (Ctrl-C, ``KeyboardInterrupt``
    while it waits): the caller removes the files they write once this raises. (An interrupt
    inside a thread's start can still return first; the writes open their own
    descriptors, so such a straggler only writes into a file that is gone.)"""
    failures: list[BaseException] = []

    def guarded(call: Callable[[], None], done: threading.Event | None = None) -> None:
        try:
            call()
        except BaseException as exc:  # raised on the caller's thread, after the waits
            failures.append(exc)
        finally:
            if done is not None:
                done.set()

    # Waited for by an Event each, not Thread.join: a join interrupted by Ctrl-C can leave
    # the thread marked stopped while it runs (CPython 3.11's _wait_for_tstate_lock).
    running: list[threading.Event] = []
    try:
        for call in calls[1:]:
            done = threading.Event()
            name = "loom-shm-write"
            threading.Thread(target=guarded, args=(call, done), name=name, daemon=True).start()
            running.append(done)
        if calls:
            guarded(calls[0])
    except BaseException as exc:  # an interrupt while starting them: wait for the rest
        failures.append(exc)
    while running:
        try:
            while running:
                running[0].wait()
                running.pop(0)
        except BaseException as exc:  # an interrupt in a wait: wait on, raise it after
            failures.append(exc)
    if failures:
        raise next((f for f in failures if not isinstance(f, Exception)), failures[0])
