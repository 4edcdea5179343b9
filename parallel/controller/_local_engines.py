"""Engines on this machine, started and watched by their controller: the ``local`` launcher.

The engines are forked by one fork server, ``python -P -m parallel.engine --fork N -f
CLUSTER.json`` in a :class:`kernel.client.KernelProcess` (own process group, output kept
for errors): it imports what an engine needs once, and each forked engine skips that
(``parallel.engine._forkserver`` says why: on 2 cores four engines importing it all
kept the start above half a second). The fork server reports ``started PID`` and
``exited PID CODE`` on a pipe; each engine is held by a pidfd from its ``started`` line,
so signals reach exactly it, never a process that took its PID later. Engines carry
``JPY_PARENT_PID`` set to the controller, so they end when the controller dies however
that happens. ``-P``: a ``parallel.py`` or ``kernel.py`` in the user's working directory
must not shadow Loom's packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from kernel.client import KernelProcess, describe_exit

from ..launchers import LaunchContext, Launcher, LauncherStatus

__all__ = ["LocalEngines"]

log = logging.getLogger("loom.controller")

#: How long stopping waits for engines to exit after SIGTERM before SIGKILL (seconds).
STOP_GRACE = 2.0
#: After SIGKILL, how long stopping waits for the fork server's last reports (seconds).
KILL_GRACE = 2.0


class LocalEngines(Launcher):
    """The engines one controller forked; every one is gone when :meth:`stop` returns."""

    name = "local"

    def __init__(self) -> None:
        self.server: KernelProcess | None = None
        #: Live engines: pid -> pidfd (closed when its ``exited`` line arrives).
        self.engines: dict[int, int] = {}
        #: Every engine the server reported started (for the status line).
        self._started_pids: list[int] = []
        self._none_left = asyncio.Event()
        self._none_left.set()
        self._reports_ended = asyncio.Event()

    async def start(self, n: int, ctx: LaunchContext) -> None:
        """Start the fork server for ``n`` engines (they register with the hub themselves)."""
        if not n:
            return
        read_fd, write_fd = os.pipe()
        argv = [sys.executable, "-P", "-m", "parallel.engine", "-f", str(ctx.cluster_file)]
        argv += ["--fork", str(n), "--status-fd", str(write_fd)]
        env = {**os.environ, "JPY_PARENT_PID": str(os.getpid())}
        try:
            self.server = KernelProcess(argv, env=env, pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._none_left.clear()
        ctx.tg.create_task(self._follow(read_fd, n, ctx), name="loom-engine-forkserver")
        ctx.report(LauncherStatus("running", f"{n} local engines, forked by pid {self.server.pid}"))

    async def _follow(self, read_fd: int, n: int, ctx: LaunchContext) -> None:
        """Act on the fork server's reports until it closes the pipe."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while line := await reader.readline():
                match line.split():
                    case [b"started", pid]:
                        self._started(int(pid), n, ctx)
                    case [b"exited", pid, code]:
                        self._exited(int(pid), int(code), ctx)
        finally:
            transport.close()
            self._reports_ended.set()
        server = self.server
        if server is not None:
            status = await server.wait()
            if status != 0:
                tail = server.output_tail().strip()
                how = describe_exit(status)
                log.warning("the engine fork server %s; its output:\n%s", how, tail)

    def _started(self, pid: int, n: int, ctx: LaunchContext) -> None:
        with contextlib.suppress(ProcessLookupError):  # gone already: "exited" follows
            self.engines[pid] = os.pidfd_open(pid)
        self._started_pids.append(pid)
        if len(self._started_pids) == n and self.server is not None:
            pids = ", ".join(map(str, self._started_pids))
            summary = f"{n} local engine processes (pids {pids}), forked by pid {self.server.pid}"
            ctx.report(LauncherStatus("running", summary))

    def _exited(self, pid: int, code: int, ctx: LaunchContext) -> None:
        pidfd = self.engines.pop(pid, None)
        if pidfd is not None:
            os.close(pidfd)
        how = describe_exit(code)
        if code != 0 and self.server is not None:
            tail = self.server.output_tail().strip()
            if tail:
                log.warning("engine pid %d %s; the engines' last output:\n%s", pid, how, tail)
        ctx.engine_exited(pid, how)
        if not self.engines:
            self._none_left.set()

    def _signal_all(self, sig: int) -> None:
        for pidfd in self.engines.values():
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, sig)

    async def stop(self) -> None:
        """SIGTERM every engine, SIGKILL what is left after ``STOP_GRACE``; then the fork
        server, which exits once it has reaped them all."""
        server = self.server
        if server is None:
            return
        for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, KILL_GRACE)):
            if self._none_left.is_set() or self._reports_ended.is_set():
                break
            self._signal_all(sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._none_left.wait()
        if self._reports_ended.is_set():  # the server died: its engines have no reaper
            self._signal_all(signal.SIGKILL)
        for pidfd in self.engines.values():
            os.close(pidfd)
        self.engines.clear()
        if server.is_alive():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE):
                    await server.wait()
        if server.is_alive():
            server.kill()
        server.reap_blocking()
        server.close()
