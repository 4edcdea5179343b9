"""Engines on this machine, started and watched by their controller: the ``local`` launcher.

Each engine is ``python -P -m parallel.engine -f CLUSTER.json`` in a
:class:`kernel.client.KernelProcess` (pidfd exit watch, own process group, output kept
for errors), with ``JPY_PARENT_PID`` set to the controller, so an engine ends when its
controller dies however that happens. ``-P``: a ``parallel.py`` or ``kernel.py`` in the
user's working directory must not shadow Loom's packages.
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


class LocalEngines(Launcher):
    """The engine processes one controller started; every one is reaped by :meth:`stop`."""

    name = "local"

    def __init__(self) -> None:
        self.processes: dict[int, KernelProcess] = {}

    async def start(self, n: int, ctx: LaunchContext) -> None:
        """Spawn ``n`` engines (they register with the hub by themselves)."""
        argv = [sys.executable, "-P", "-m", "parallel.engine", "-f", str(ctx.cluster_file)]
        env = {**os.environ, "JPY_PARENT_PID": str(os.getpid())}
        for _ in range(n):
            process = KernelProcess(argv, env=env)
            self.processes[process.pid] = process
            ctx.tg.create_task(self._watch(process, ctx), name=f"loom-engine-pid-{process.pid}")
        if n:
            pids = ", ".join(str(pid) for pid in self.processes)
            ctx.report(LauncherStatus("running", f"{n} local engine processes (pids {pids})"))

    async def _watch(self, process: KernelProcess, ctx: LaunchContext) -> None:
        code = await process.wait()
        how = describe_exit(code)
        tail = process.output_tail().strip()
        if code != 0 and tail:
            log.warning("engine pid %d %s; its last output:\n%s", process.pid, how, tail)
        ctx.engine_exited(process.pid, how)

    async def stop(self) -> None:
        """SIGTERM every engine still running, SIGKILL what is left after ``STOP_GRACE``."""
        alive = [p for p in self.processes.values() if p.is_alive()]
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if alive:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE):
                    await asyncio.gather(*(p.wait() for p in alive))
        for process in self.processes.values():
            if process.is_alive():
                process.kill()
            process.reap_blocking()
            process.close()
