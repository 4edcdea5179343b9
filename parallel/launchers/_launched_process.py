"""A launcher's command (``mpiexec``, ``srun``, ``ssh``): a process watched without threads.

A :class:`kernel.client.KernelProcess` (own session, so signals reach its whole group;
a pidfd on the loop for its exit) whose output goes to a named log file in the
launcher's private directory, so a failure can quote what it printed, and whose stdin
can be a pipe (``ssh`` reads its engines' settings there and ends them when it closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from kernel.client import KernelProcess

__all__ = ["LaunchedProcess", "tail_of"]

#: How much of a launcher's output a failure quotes (bytes).
TAIL = 2000


def tail_of(path: Path, limit: int = TAIL) -> str:
    """The last ``limit`` bytes of ``path``, decoded leniently ("" if unreadable)."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - limit))
            return file.read().decode("utf-8", "replace")
    except OSError:
        return ""


class LaunchedProcess(KernelProcess):
    """One launcher command: a :class:`KernelProcess` whose output goes to ``log`` and
    whose stdin may be a pipe. The owner calls :meth:`stop` (or :meth:`kill`), then
    :meth:`close`. Spawning raises ``OSError`` (``FileNotFoundError``: not installed)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        stdin_pipe: bool = False,
        stdout_pipe: bool = False,
    ) -> None:
        super().__init__(argv, env=env, log=log, stdin_pipe=stdin_pipe, stdout_pipe=stdout_pipe)
        self.argv = list(argv)
        self.log = log

    def output(self, limit: int = TAIL) -> str:
        """The end of the log (other commands of the launcher may have written to it too)."""
        return tail_of(self.log, limit)

    async def stop(self, grace: float) -> None:
        """SIGTERM the group; SIGKILL it after ``grace`` seconds; reap."""
        if self.is_alive():
            self.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self.wait()
        self.send_signal(signal.SIGKILL)  # stragglers in the group, even after the leader
        if self.is_alive():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self.wait()
        self.close()


async def run_command(
    argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None, timeout: float
) -> tuple[int, str]:
    """Run a short command (``sbatch``, ``squeue``, ``scancel``) to its end: its exit
    status (``-9`` if it overran ``timeout`` and was killed) and what it printed. Its
    output is appended to ``log`` too, so the launcher's log tells the whole story."""
    start = _size(log)
    process = LaunchedProcess(argv, log=log, env=env)
    try:
        async with asyncio.timeout(timeout):
            code = await process.wait()
    except TimeoutError:
        code = -signal.SIGKILL
    finally:
        await process.stop(0.0)
    return code, _read_from(log, start)


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, start: int) -> str:
    with path.open("rb") as file:  # a local file a command just wrote: quick
        file.seek(start)
        return file.read().decode("utf-8", "replace")
