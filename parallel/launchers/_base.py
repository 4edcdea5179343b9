"""The launcher interface: how a controller starts, watches and stops its engines.

Theory of operation
-------------------
A launcher runs inside the controller process, on its asyncio loop (no threads). The
controller builds it from a spec (``{"engines": NAME, "options": {...}}``, JSON on its
command line: no secrets, the cluster file's *path* is all an engine needs), calls
:meth:`Launcher.start` once with the engine count and a :class:`LaunchContext`, and
:meth:`Launcher.stop` when the cluster stops. A launcher that needs only that path
(``starts_before_controller``) is started before the controller has even bound its
sockets, and its engines wait for the file. ``start`` only spawns or submits
(``mpiexec``, ``sbatch``, ``ssh``) and returns; engines register with the hub by
themselves, and the launcher watches its processes in tasks of ``ctx.tg``.

What a launcher knows that the hub does not (a job still pending, a launcher command
that failed and what it printed) it says through :meth:`LaunchContext.report`: one
``loom launcher {json}`` line on the controller's stdout. ``Cluster`` reads the last
such line from its controller's output (``_status.last_status``), so a start that
cannot finish ends at once, or at its timeout, saying why and what the launcher printed.

A new launcher (PBS, Kubernetes...) is a subclass of :class:`Launcher` named
``"package.module:Class"`` in ``Cluster(engines=...)``; nothing in Loom changes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ._status import STATUS_PREFIX, LauncherStatus

__all__ = ["LaunchContext", "LaunchError", "Launcher"]


class LaunchError(Exception):
    """A launcher's options are wrong, or its command failed; the message says which,
    and ``output`` holds what the command printed (if anything)."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass
class LaunchContext:
    """What the controller gives a launcher: where engines find the cluster, a task
    group for watchers, and two callbacks."""

    #: The cluster file (0600): an engine needs only this path (``-f``).
    cluster_file: Path
    #: Tasks that watch launched processes belong here; they end with the controller.
    tg: asyncio.TaskGroup
    #: Called with ``(pid, how)`` when an engine process this launcher owns exits, so the
    #: hub loses that engine at once instead of after its heartbeat grace.
    engine_exited: Callable[[int, str], None] = lambda pid, how: None
    #: A private directory (0700) for launcher files: job scripts, logs.
    workdir: Path = field(default_factory=Path)
    #: The cluster's id, for job names.
    cluster_id: str = ""
    #: The last status reported (the controller's own view).
    status: LauncherStatus | None = None

    def report(self, status: LauncherStatus) -> None:
        """Say what the launcher is doing, on the controller's stdout (one line)."""
        self.status = status
        print(f"{STATUS_PREFIX} {json.dumps(status.to_dict())}", file=sys.stdout, flush=True)


class Launcher(ABC):
    """Starts ``n`` engines of one cluster somewhere, and stops every one of them.

    Subclasses take their options as keyword arguments and raise :class:`LaunchError`
    (one line) for bad ones in ``__init__``, which must have no side effects: ``Cluster``
    builds the launcher once in the user's process only to check the options.
    """

    #: The name in ``Cluster(engines=...)`` and ``loom cluster start --engines``.
    name: ClassVar[str] = ""

    #: Whether engines bind addresses other machines reach even when the controller is
    #: on loopback (``ssh``: the controller stays behind its tunnel, engines bind the
    #: host's address). Then the cluster gets CurveZMQ unless told ``--insecure-plaintext``.
    engines_off_loopback: ClassVar[bool] = False

    #: Whether :meth:`start` needs only ``ctx.cluster_file``'s *path*: its engines wait for
    #: the file to appear (``engine_argv``'s ``_node_engine`` does) and it reads nothing
    #: from it. The controller then starts it first and binds, writes the file and sets up
    #: its hub while the command starts (``mpi``, ``slurm``). False (the default): the
    #: file exists when ``start`` is called (``ssh`` reads the hub's port from it).
    starts_before_controller: ClassVar[bool] = False

    @abstractmethod
    async def start(self, n: int, ctx: LaunchContext) -> None:
        """Spawn or submit ``n`` engines (``python -P -m parallel.engine -f FILE``) and
        return; raise :class:`LaunchError` if that fails, with what the command printed.
        Later failures go to ``ctx.report`` with state ``failed``."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop everything this launcher started, local and remote; idempotent."""

    def default_count(self) -> int | None:
        """How many engines ``Cluster(n=None)`` starts (None: one per local CPU)."""
        return None

    # -- replacing a dead engine (optional) -------------------------------------------------

    #: Whether :meth:`replace` can start one engine again. Launchers that start all their
    #: engines as one job (mpiexec, a Slurm job) cannot, and leave this False: their dead
    #: engines stay dead (docs/parallel.md, "When things fail").
    can_replace: ClassVar[bool] = False

    def replace(self, engine_uuid: str) -> None:
        """Start one engine again, registering as ``engine_uuid`` (``python -P -m
        parallel.engine -f FILE`` with that uuid), so it gets the dead one's id back.
        Returns at once; raises :class:`LaunchError` if it cannot."""
        raise LaunchError(f"the {self.name or type(self).__name__} launcher cannot replace engines")

    def uuid_of(self, pid: int) -> str | None:
        """The uuid of the engine process ``pid`` this launcher started, if it knows it
        (so a replacement that dies before registering is still counted)."""
        return None

    def output_of(self, pid: int) -> str:
        """The last lines engine process ``pid`` wrote (stderr), if this launcher has them."""
        return ""

    def adopt(self, engines: Mapping[int, str], ctx: LaunchContext) -> None:
        """A restored controller (``--restore``) hands over the engines of its cluster
        that run on this machine, ``pid -> uuid``, so a launcher that ``can_replace``
        watches them and replaces them when they die. Default: nothing (they stay the
        dead controller's, and are not replaced)."""
        return None


def load_launcher(engines: str) -> type[Launcher]:
    """The launcher class named ``engines``: a built-in name or ``"module:Class"``."""
    from ._builtin import BUILTIN

    if not isinstance(engines, str):
        raise LaunchError(f"engines must be a launcher's name, not {engines!r}")
    target = BUILTIN.get(engines, engines)
    module_name, colon, attr = target.partition(":")
    if not colon or not module_name or not attr:
        names = ", ".join(repr(name) for name in BUILTIN)
        raise LaunchError(f"engines={engines!r}: use one of {names} or 'package.module:Class'")
    import importlib

    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise LaunchError(f"engines={engines!r}: cannot import it: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Launcher)):
        raise LaunchError(f"engines={engines!r} is not a parallel.launchers.Launcher subclass")
    return cls


def make_launcher(engines: str, options: Mapping[str, Any] | None = None) -> Launcher:
    """Build the launcher ``engines`` with ``options``; :class:`LaunchError` if wrong."""
    cls = load_launcher(engines)
    try:
        return cls(**dict(options or {}))
    except TypeError as exc:  # an unknown or missing option
        raise LaunchError(f"engines={engines!r}: {exc}") from None


def describe_death(code: int, *, oom_killed: bool = False) -> str:
    """How a process ended, from its Popen-style status (negative: the signal).

    ``"killed by signal 9 (SIGKILL)"``, ``"exited with code 3"``. ``oom_killed``: the
    kernel's out-of-memory killer fired in the engine's cgroup while it died (the only
    way to tell an OOM kill from any other SIGKILL): said as such.
    """
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = f" ({signal.Signals(-code).name})"
    except ValueError:
        name = ""
    how = f"killed by signal {-code}{name}"
    if oom_killed and -code == signal.SIGKILL:
        how += ": it ran out of memory (the kernel's OOM killer)"
    return how
