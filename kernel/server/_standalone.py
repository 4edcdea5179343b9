"""``loom kernel`` on a connection file it wrote itself: the file goes when the kernel does.

Nobody else knows of that file (a manager that launches a kernel writes the file first,
and removes it itself), so a kernel that leaves it behind leaves a stale file that
``loom --existing`` would otherwise find. SIGTERM (``kill PID``), SIGHUP (the terminal
closed) and SIGQUIT (Ctrl-\\ in the terminal) remove it and end the process at once
(status 128 + the signal), as does a normal shutdown. SIGINT is not among them: it is
how clients interrupt a running cell, and a Ctrl-C typed at the kernel's terminal is the
same signal, so it interrupts too; :func:`stop_hint` says how to stop the kernel instead.
Only SIGKILL can still leave the file behind, which ``--existing`` then detects.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import FrameType

__all__ = ["STOP_SIGNALS", "remove_file_on_signals", "stop_hint"]

#: The signals that stop a standalone kernel, removing its connection file first.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def remove_file_on_signals(path: Path) -> None:
    """From now on, each of :data:`STOP_SIGNALS` removes ``path`` and ends the process."""

    def stop(signum: int, frame: FrameType | None) -> None:
        path.unlink(missing_ok=True)
        os._exit(128 + signum)  # no cleanup of user code's can keep a stopped kernel alive

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)


def stop_hint() -> str:
    """What the kernel prints at start: how to stop it, since Ctrl-C does not."""
    return (
        "Ctrl-C interrupts the running cell (as a client's interrupt does); to stop this "
        f"kernel, press Ctrl-\\ or run: kill {os.getpid()} (either removes its connection file)"
    )
