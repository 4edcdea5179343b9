"""The built-in launchers, by name (imported only when used)."""

from __future__ import annotations

__all__ = ["BUILTIN"]

BUILTIN = {
    "local": "parallel.controller._local_engines:LocalEngines",
    "mpi": "parallel.launchers._mpi:MPILauncher",
    "slurm": "parallel.launchers._slurm:SlurmLauncher",
    "srun": "parallel.launchers._srun:SrunLauncher",
    "ssh": "parallel.launchers._ssh:SSHLauncher",
}
