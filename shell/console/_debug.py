"""A hidden check that the console never runs a second Python thread.

``LOOM_DEBUG_THREADS=1`` prints ``[loom-debug] threads=N (names)`` to stderr
at every prompt; any other non-empty value is a file path to which the same
line is appended instead (what the end-to-end tests read). Off by default.
"""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["report_threads"]


def report_threads(where: str = "prompt") -> None:
    """Record the live Python threads, if ``LOOM_DEBUG_THREADS`` asks for it."""
    target = os.environ.get("LOOM_DEBUG_THREADS")
    if not target:
        return
    names = ",".join(sorted(t.name for t in threading.enumerate()))
    line = f"[loom-debug] {where} threads={threading.active_count()} ({names})\n"
    if target == "1":
        sys.stderr.write(line)
        sys.stderr.flush()
        return
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(line)
