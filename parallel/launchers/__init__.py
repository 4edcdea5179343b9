"""Engine launchers: local processes, MPI (``mpiexec``), Slurm (``sbatch``) and SSH.

A launcher is a :class:`Launcher` subclass; the controller builds one from
``Cluster(engines=NAME, **options)`` (or ``"package.module:Class"``) and calls its
``start`` and ``stop``. docs/parallel.md ("Launchers") is the user guide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = [
    "CommandLauncher",
    "LaunchContext",
    "LaunchError",
    "Launcher",
    "LauncherStatus",
    "describe_death",
    "engine_argv",
    "load_launcher",
    "make_launcher",
]

_EXPORTS = {
    "CommandLauncher": "._command",
    "LaunchContext": "._base",
    "LaunchError": "._base",
    "Launcher": "._base",
    "LauncherStatus": "._status",
    "describe_death": "._base",
    "load_launcher": "._base",
    "engine_argv": "._command",
    "make_launcher": "._base",
}

if TYPE_CHECKING:
    from ._base import (
        LaunchContext,
        Launcher,
        LaunchError,
        describe_death,
        load_launcher,
        make_launcher,
    )
    from ._command import CommandLauncher, engine_argv
    from ._status import LauncherStatus

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
