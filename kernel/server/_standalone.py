"""``loom kernel``: a kernel run by hand in a terminal, and the connection file it writes.

A kernel that writes its own connection file (no ``-f``, or a file that does not exist
yet) removes it when it stops: nobody else knows of it (a manager that launches a kernel
writes the file first, and removes it itself), and a file left behind is a stale file
that ``loom --existing`` would otherwise find. A normal shutdown removes it, and so do
SIGTERM (``kill PID``), SIGHUP (the terminal closed) and SIGQUIT (Ctrl-\\), which end the
process at once (status 128 + the signal). Only SIGKILL can leave it behind, which
``--existing`` then detects.

SIGINT cannot be among those signals for the kernel itself: it is how a running cell is
interrupted. So ``loom kernel`` runs the kernel as a child in a session of its own
(:func:`supervise`), out of reach of the terminal's Ctrl-C, and stays in the foreground
itself: Ctrl-C there, like SIGTERM, SIGHUP or SIGQUIT, stops the kernel (by SIGTERM,
which removes its file). ``JPY_PARENT_PID`` makes the kernel stop by itself should its
supervisor be killed outright. ``python -m kernel`` is the bare kernel, as Jupyter tools
launch it; in a terminal it says how to stop it (:func:`stop_hint`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

__all__ = ["STOP_SIGNALS", "remove_file_on_signals", "stop_hint", "supervise"]

#: The signals that stop a standalone kernel, removing its connection file first.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def remove_file_on_signals(path: Path) -> None:
    """From now on, each of :data:`STOP_SIGNALS` removes ``path`` and ends the process."""

    def stop(signum: int, frame: FrameType | None) -> None:
        path.unlink(missing_ok=True)
        os._exit(128 + signum)  # no cleanup of user code's can keep a stopped kernel alive

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)


def stop_hint() -> str | None:
    """How to stop a bare kernel in a terminal (Ctrl-C does not); None without a terminal
    (a supervised or launched kernel, whose stdin is not one)."""
    if not os.isatty(0):
        return None
    return (
        "Ctrl-C interrupts the running cell (as a client's interrupt does); to stop this "
        f"kernel, press Ctrl-\\ or run: kill {os.getpid()} (either removes its connection file)"
    )


def supervise(connection_file: str | None) -> int:
    """Run ``python -P -m kernel`` as a child in its own session until it exits; return
    its status, or 128 + the signal that stopped it (module docstring).

    Ctrl-C, SIGTERM, SIGHUP and SIGQUIT received here send the kernel SIGTERM.
    """
    argv = [sys.executable, "-P", "-m", "kernel"]
    if connection_file:
        argv += ["-f", connection_file]
    env = {**os.environ, "JPY_PARENT_PID": str(os.getpid())}
    print(
        "loom kernel: Ctrl-C stops this kernel (and removes the connection file it "
        "writes); clients interrupt its cells with interrupt requests",
        flush=True,
    )
    child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    received: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        if not received:
            received.append(signum)
            child.send_signal(signal.SIGTERM)

    for signum in (signal.SIGINT, *STOP_SIGNALS):
        signal.signal(signum, stop)
    code = child.wait()  # signals interrupt the wait, run stop(), and it resumes (PEP 475)
    if received:
        return 128 + received[0]
    return code if code >= 0 else 128 - code
