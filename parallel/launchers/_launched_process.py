"""A launcher's command (``mpiexec``, ``srun``, ``ssh``): a process watched without threads.

Like :class:`kernel.client.KernelProcess` (own session, so signals reach its whole
group; a pidfd on the loop for its exit), but its output goes to a named log file in the
launcher's private directory, so a failure can quote what it printed, and its stdin can
be a pipe (``ssh`` reads its engines' settings there and ends them when it closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

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


class LaunchedProcess:
    """One launcher command; the owner calls :meth:`terminate` or :meth:`kill`, then
    :meth:`close`. Spawning raises ``OSError`` (``FileNotFoundError``: not installed)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        stdin_pipe: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.log = log
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        finally:
            os.close(fd)
        self._pidfd: int | None = os.pidfd_open(self._popen.pid)
        self._exited: asyncio.Future[int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def stdin(self) -> IO[bytes] | None:
        return self._popen.stdin

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def is_alive(self) -> bool:
        return self.returncode is None

    def output(self, limit: int = TAIL) -> str:
        return tail_of(self.log, limit)

    async def wait(self) -> int:
        """The exit status, once the process has exited. Any number of tasks may wait:
        one pidfd reader settles one shared future."""
        code = self._popen.poll()
        if code is not None or self._pidfd is None:
            self._release_pidfd()
            return self._popen.wait()
        if self._exited is None:
            self._loop = asyncio.get_running_loop()
            self._exited = self._loop.create_future()
            self._loop.add_reader(self._pidfd, self._on_exit)
        return await asyncio.shield(self._exited)

    def _on_exit(self) -> None:
        code = self._popen.poll()
        if code is not None:
            self._release_pidfd()
            if self._exited is not None and not self._exited.done():
                self._exited.set_result(code)

    def _release_pidfd(self) -> None:
        if self._pidfd is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None

    def signal_group(self, sig: int) -> None:
        """``sig`` to the process group (its own session), or to the process alone."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            if self.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, sig)

    async def stop(self, grace: float) -> None:
        """SIGTERM the group; SIGKILL it after ``grace`` seconds; reap."""
        if self.is_alive():
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self.wait()
        self.signal_group(signal.SIGKILL)  # stragglers in the group, even after the leader
        if self.is_alive():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self.wait()
        self.close()

    def close_stdin(self) -> None:
        """End the process's stdin (``ssh`` passes the EOF on to the remote command)."""
        if self._popen.stdin is not None and not self._popen.stdin.closed:
            with contextlib.suppress(OSError):
                self._popen.stdin.close()

    def close(self) -> None:
        self.close_stdin()
        code = self._popen.poll()
        if code is not None and self._exited is not None and not self._exited.done():
            self._exited.set_result(code)
        self._release_pidfd()
        if self._exited is not None and not self._exited.done():
            self._exited.cancel()


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
