"""Engines on this machine, started and watched by their controller.

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
from collections.abc import Callable
from pathlib import Path

from kernel.client import KernelProcess, describe_exit

__all__ = ["LocalEngines"]

log = logging.getLogger("loom.controller")

#: How long stopping waits for engines to exit after SIGTERM before SIGKILL (seconds).
STOP_GRACE = 2.0


class LocalEngines:
    """The engine processes one controller started; every one is reaped by :meth:`stop`."""

    def __init__(
        self,
        cluster_file: Path,
        tg: asyncio.TaskGroup,
        on_exit: Callable[[int, str], None],
    ) -> None:
        self._cluster_file = cluster_file
        self._tg = tg
        #: Called with (pid, how it exited) when an engine process ends.
        self._on_exit = on_exit
        self.processes: dict[int, KernelProcess] = {}

    def start(self, count: int) -> None:
        """Spawn ``count`` engines (they register with the hub by themselves)."""
        argv = [sys.executable, "-P", "-m", "parallel.engine", "-f", str(self._cluster_file)]
        env = {**os.environ, "JPY_PARENT_PID": str(os.getpid())}
        for _ in range(count):
            process = KernelProcess(argv, env=env)
            self.processes[process.pid] = process
            self._tg.create_task(self._watch(process), name=f"loom-engine-pid-{process.pid}")

    async def _watch(self, process: KernelProcess) -> None:
        code = await process.wait()
        how = describe_exit(code)
        tail = process.output_tail().strip()
        if code != 0 and tail:
            log.warning("engine pid %d %s; its last output:\n%s", process.pid, how, tail)
        self._on_exit(process.pid, how)

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
