"""The ``srun`` launcher: engines as one ``srun`` step inside a Slurm allocation.

What a controller running inside a batch job (``Cluster(engines="slurm",
controller="job")``) uses: ``srun --ntasks=N [srun_args] PYTHON -P -m
parallel.launchers._node_engine -f CLUSTER.json``, watched as one command. Works in any
allocation (``salloc``, ``sbatch``); outside one, srun asks Slurm for a new one.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence

from ._base import LaunchContext, LaunchError
from ._command import CommandLauncher
from ._mpi import _environment, _strings

__all__ = ["SrunLauncher"]


class SrunLauncher(CommandLauncher):
    """``Cluster(engines="srun", srun_args=[...], env={...}, python=...)``."""

    name = "srun"

    def __init__(
        self,
        srun_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        super().__init__()
        if python is not None and not (isinstance(python, str) and os.path.isabs(python)):
            raise LaunchError(f"python must be an absolute path, not {python!r}")
        self.srun_args = _strings("srun_args", srun_args)
        self.env = _environment(env or {})
        self.python = python or sys.executable

    def command(self, n: int, ctx: LaunchContext) -> tuple[list[str], Mapping[str, str]]:
        srun = shutil.which("srun")
        if srun is None:
            raise LaunchError("srun: not found (install Slurm's client commands)")
        env = {**os.environ, **self.env}
        env.pop("JPY_PARENT_PID", None)
        argv = [srun, f"--ntasks={n}", *self.srun_args, self.python, "-P", "-m"]
        argv += ["parallel.launchers._node_engine", "-f", str(ctx.cluster_file)]
        return argv, env
