"""``CommandLauncher``: a launcher that is one command (``mpiexec ...``), watched to its end.

The command starts every engine and runs as long as they do. Its output goes to a log in
the launcher's directory; if it exits before :meth:`stop`, the launcher reports
``failed`` with its exit status and last output, so a waiting ``Cluster`` ends at once.
"""

from __future__ import annotations

import os
import sys
from abc import abstractmethod
from collections.abc import Mapping

from kernel.client import describe_exit

from ._base import LaunchContext, Launcher, LaunchError
from ._launched_process import LaunchedProcess
from ._status import LauncherStatus

__all__ = ["CommandLauncher", "engine_argv"]

#: Seconds a command gets to end after SIGTERM (mpiexec forwards it to its ranks).
STOP_GRACE = 5.0


def engine_argv(ctx: LaunchContext, python: str | None = None) -> list[str]:
    """The command of one engine on any node: ``python -P -m
    parallel.launchers._node_engine -f CLUSTER.json`` (``parallel.engine`` that binds its
    own node's address and, on the controller's node, ends with the controller), the
    interpreter an absolute path (a shell shim on PATH costs seconds per process)."""
    module = "parallel.launchers._node_engine"
    return [python or sys.executable, "-P", "-m", module, "-f", str(ctx.cluster_file)]


class CommandLauncher(Launcher):
    """One command per cluster; subclasses say which (:meth:`command`)."""

    def __init__(self) -> None:
        self.process: LaunchedProcess | None = None
        self._stopping = False

    @abstractmethod
    def command(self, n: int, ctx: LaunchContext) -> tuple[list[str], Mapping[str, str]]:
        """The argv and the environment that start ``n`` engines."""

    async def start(self, n: int, ctx: LaunchContext) -> None:
        argv, env = self.command(n, ctx)
        log = ctx.workdir / f"{self.name or 'launcher'}.log"
        try:
            self.process = LaunchedProcess(argv, log=log, env=env)
        except OSError as exc:
            raise LaunchError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        ctx.report(
            LauncherStatus(
                "running", f"{os.path.basename(argv[0])} pid {self.process.pid}", log=str(log)
            )
        )
        ctx.tg.create_task(self._watch(self.process, ctx), name=f"loom-{self.name}-watch")

    async def _watch(self, process: LaunchedProcess, ctx: LaunchContext) -> None:
        code = await process.wait()
        if self._stopping:
            return
        what = f"{os.path.basename(process.argv[0])} (pid {process.pid}) {describe_exit(code)}"
        ctx.report(LauncherStatus("failed", what, process.output(), str(process.log)))

    async def stop(self) -> None:
        self._stopping = True
        if self.process is not None:
            await self.process.stop(STOP_GRACE)
