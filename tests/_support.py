"""Helpers for tests in more than one folder: processes a test starts, killed by PID.

Imported as ``_support`` (``tests/conftest.py`` puts ``tests/`` on ``sys.path``).

A scenario runs in a fresh event loop bounded by ``asyncio.timeout`` (:func:`run`);
each kernel process it starts is registered with a :class:`Reaper`, which SIGKILLs
and reaps it by PID afterwards, whatever happened; :func:`is_gone` checks that a
process no longer exists. Linux/POSIX only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from kernel import KernelManager
from kernel.client import wait_pid_exit

Scenario = Callable[["Reaper"], Coroutine[Any, Any, None]]


def is_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists any more (it has exited and been reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited (a pidfd becomes readable then: no polling).

    Works for processes that are not our children, e.g. a kernel a console started.
    """
    return wait_pid_exit(pid, timeout)


def sigkill_and_reap(pid: int) -> None:
    """SIGKILL ``pid`` (and the process group it leads, if it leads one); reap it if ours.

    Only for a process that is not reaped yet: a reaped PID may belong to another
    process by now.
    """
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class Reaper:
    """Remembers the processes a test started, to kill them by PID whatever happens."""

    def __init__(self) -> None:
        self._tracked: list[tuple[int, Callable[[], bool]]] = []  # (pid, is it unreaped?)

    def track_manager(self, manager: KernelManager) -> int:
        """Track the kernel process ``manager`` runs now; its PID."""
        proc = manager.process
        assert proc is not None
        self._tracked.append((proc.pid, lambda: proc.returncode is None))
        return proc.pid

    def track_popen(self, popen: subprocess.Popen[bytes]) -> int:
        """Track ``popen``; its PID."""
        self._tracked.append((popen.pid, lambda: popen.poll() is None))
        return popen.pid

    def kill_all(self) -> None:
        """:func:`sigkill_and_reap` every tracked process that is not reaped yet."""
        for pid, unreaped in self._tracked:
            if unreaped():  # never signal a PID that is already reaped (it may be reused)
                sigkill_and_reap(pid)


def run(scenario: Scenario, *, timeout: float = 60.0) -> None:
    """Run ``scenario`` in a new loop; kill what it started; no Python thread may remain."""
    reaper = Reaper()

    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await scenario(reaper)

    try:
        asyncio.run(bounded())
    finally:
        reaper.kill_all()
    assert_no_thread_but_main()


def assert_no_thread_but_main() -> None:
    """No Python thread runs in this process but the main one (and pyzmq's own
    garbage-collector daemon, which another test's large send may have started)."""
    assert _threads() == [threading.main_thread()], threading.enumerate()


def _threads() -> list[threading.Thread]:
    """This process's Python threads, but pyzmq's garbage collector: pyzmq starts that
    daemon at its first zero-copy send (a large buffer: a pushed array) to learn when
    libzmq is done with the memory; it runs no code of ours. (docs/parallel.md says so.)"""
    from zmq.utils.garbage import GarbageCollectorThread

    return [t for t in threading.enumerate() if not isinstance(t, GarbageCollectorThread)]
