"""``Cluster``: a controller and N engines, started and stopped from Python.

Theory of operation
-------------------
``start_cluster`` spawns ``python -P -m parallel.controller -n N --launcher SPEC`` as a
:class:`kernel.client.KernelProcess` (own process group, pidfd exit watch, output kept
for error messages) with a pipe on which the controller writes its cluster file's path
once it serves, and with ``--parent`` set to this process, so a script killed by any
means takes its cluster with it. The controller starts the engines through its launcher
(``parallel.launchers``: local processes, mpiexec, a Slurm job, ssh); connecting waits
until ``n`` of them have registered, racing the controller's exit and its launcher's
failure (the launcher's ``loom launcher {...}`` status lines in the controller's
output), so a cluster that cannot start says why within its timeout instead of hanging:
which engines came up, and what the launcher printed.

Blocking methods need no event loop (``select`` on the pipe, the client's pump), so
they work in scripts and inside a running kernel cell; the ``async`` twins wait on the
caller's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kernel.client import KernelProcess, describe_exit, wait_pid_exit

from .._errors import ClusterUnavailable
from ..client._pool_client import REQUERY
from ..controller._record_options import DURABILITY
from ..launchers import LaunchError, LauncherStatus, make_launcher
from ..launchers._launched_process import tail_of
from ..launchers._status import last_status
from ..protocol._engine_traits import labels_from, resources_from, traits_env

if TYPE_CHECKING:
    from ..client._pool_client import Client

__all__ = ["Cluster"]

#: Seconds to wait for the controller to serve and the engines to register, by default.
START_TIMEOUT = 60.0
#: Seconds the controller gets to stop its engines before it is killed (a launcher's
#: stop may have to wait for ``scancel`` or for ``ssh`` sessions to close).
STOP_TIMEOUT = 15.0
#: How long ``restore_sync`` waits for engines to re-attach (seconds).
RESTORE_WAIT = 15.0
#: How much of the controller's output is searched for its launcher's status (bytes).
STATUS_TAIL = 16000


class Cluster:
    """A cluster: ``Cluster(n=4)``; see the module docstring.

    ``with Cluster(n=4) as rc:`` starts it and gives a connected :class:`Client`, and
    stops everything it started on exit; so does ``async with``.
    """

    def __init__(
        self,
        n: int | None = None,
        *,
        ip: str = "127.0.0.1",
        engines: str = "local",
        transport: str | None = None,
        detached: bool = False,
        controller: str = "local",
        db: bool = True,
        durability: str = "async",
        restore: bool | str | os.PathLike[str] = False,
        supervise: bool = False,
        restart_engines: bool = True,
        restart_limit: str | None = None,
        curve: bool | None = None,
        heartbeat_timeout: float | None = None,
        setup_timeout: float | None = None,
        labels: Sequence[str] | str | None = None,
        resources: Mapping[str, float | str] | str | None = None,
        **launcher_options: Any,
    ):
        """``engines``: who starts the engines, ``"local"`` (the controller's children),
        ``"mpi"``, ``"slurm"``, ``"ssh"`` or a ``"package.module:Class"`` launcher, with
        ``launcher_options`` as its keyword arguments (docs/parallel.md, "Launchers").
        ``transport="ipc"`` (the default for local engines): socket files in an
        owner-only directory, so only this user can connect, and large buffers skip their
        own digest; ``"tcp"`` (the default for other launchers): sockets on ``ip``.
        ``detached``: the cluster outlives this process (``loom cluster start``);
        otherwise it stops when this process exits. ``controller="job"`` (slurm only):
        the controller runs inside the batch job, and starts the engines with ``srun``.
        ``restart_engines``: replace an engine that dies (same id, a new process, the
        recorded setup replayed) where the launcher can (docs/parallel.md, "When things
        fail"); False: dead engines stay dead. ``restart_limit``: ``"DEATHS/SECONDS"``,
        give up on an engine that died that often (default ``"3/60"``). ``curve``:
        CurveZMQ encryption and its allow-list on every socket; ``None`` (default): on
        exactly when ``ip`` is not loopback; ``False`` off loopback is insecure plaintext
        (a warning says so); ``True`` on loopback too (docs/parallel.md, "Security").
        ``heartbeat_timeout``: seconds of heartbeat silence that lose an engine (default 3
        on this machine, 10 over a network). ``setup_timeout``: seconds one recorded setup
        item may run on a joining engine before it is announced with a timeout error
        (default 300)."""
        #: ``labels`` and ``resources`` of every engine (``loom engine --label``), handed on
        #: in the environment, LOOM_ENGINE_LABELS and _RESOURCES, which every launcher passes
        #: to its engines (docs/parallel.md, "Labels and resources").
        self._traits_env = traits_env(labels_from(labels), resources_from(resources))
        if controller not in ("local", "job"):
            raise ValueError(f"controller must be 'local' or 'job', not {controller!r}")
        if controller == "job" and engines != "slurm":
            raise ValueError("controller='job' needs engines='slurm'")
        self.controller = controller
        if durability not in DURABILITY:
            raise ValueError(f"durability must be 'async' or 'sync', not {durability!r}")
        #: Task records (issue 13): ``db=False`` keeps them in memory only; ``durability=
        #: "sync"``: an engine's reply waits for its record's commit. ``restore``: take
        #: over the cluster of a controller that died (``True``: the newest cluster file).
        self.db = db
        self.durability = durability
        self.restore = restore
        #: Restart a controller that dies with ``--restore``, from the client's waits.
        self.supervise = supervise
        #: Controllers restarted so far (``supervise``).
        self.revived = 0
        self.restart_engines = restart_engines
        if restart_limit is not None:
            from ..controller._controller import restart_policy

            restart_policy(restart_limit)  # a bad limit: a one-line ValueError, here
        self.restart_limit = restart_limit
        if heartbeat_timeout is not None and not heartbeat_timeout > 0:
            raise ValueError(f"heartbeat_timeout must be > 0 seconds, not {heartbeat_timeout!r}")
        self.heartbeat_timeout = heartbeat_timeout
        if setup_timeout is not None and not setup_timeout > 0:
            raise ValueError(f"setup_timeout must be > 0 seconds, not {setup_timeout!r}")
        self.setup_timeout = setup_timeout
        self.curve = curve
        if transport is None:
            transport = "ipc" if engines == "local" else "tcp"
        if transport not in ("ipc", "tcp"):
            raise ValueError(f"transport must be 'ipc' or 'tcp', not {transport!r}")
        if curve and transport == "ipc":
            raise ValueError("curve=True needs transport='tcp' (ipc admits only this user already)")
        try:
            launcher = make_launcher(engines, launcher_options)  # checks; starts nothing
            self._launcher_spec = json.dumps({"engines": engines, "options": launcher_options})
        except LaunchError as exc:
            raise ValueError(str(exc)) from None
        except (TypeError, ValueError) as exc:  # json: the controller gets them as JSON
            raise ValueError(f"launcher options must be JSON values: {exc}") from None
        self.engines = engines
        self.launcher_options = launcher_options
        self.transport = transport
        self.detached = detached
        if n is None:
            n = launcher.default_count() or os.cpu_count() or 1
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a number of engines, 0 or more, not {n!r}")
        self.n = n
        self.ip = ip
        self.cluster_file: Path | None = None
        self._process: KernelProcess | None = None
        self._ready_fd: int | None = None
        self._client: Client | None = None

    def __repr__(self) -> str:
        state = "running" if self._process is not None and self._process.is_alive() else "stopped"
        return f"<Cluster n={self.n} engines={self.engines} {state} file={self.cluster_file}>"

    @property
    def launcher_status(self) -> LauncherStatus | None:
        """What the launcher last said (``pending``, ``running``, ``failed``...), if any."""
        process = self._process
        return None if process is None else last_status(process.output_tail(STATUS_TAIL))

    # -- starting -------------------------------------------------------------------

    def _spawn(self, n: int) -> None:
        if self._process is not None and self._process.is_alive():
            raise RuntimeError("this cluster is already running")
        read_fd, write_fd = os.pipe()
        if self.controller == "job":  # a supervisor: the controller is in the job
            argv = [
                sys.executable, "-P", "-m", "parallel.launchers._job_controller", "--outside",
                "-n", str(n), "--spec", self._launcher_spec, "--ready-fd", str(write_fd),
            ]  # fmt: skip
        else:
            argv = [
                sys.executable, "-P", "-m", "parallel.controller",
                "-n", str(n), "--ip", self.ip, "--transport", self.transport,
                "--ready-fd", str(write_fd), "--launcher", self._launcher_spec,
            ]  # fmt: skip
        if self.controller != "job":
            argv += self._record_args()
        if not self.detached:
            argv += ["--parent", str(os.getpid())]
        if not self.restart_engines and self.controller != "job":
            argv += ["--no-restart"]
        if self.restart_limit is not None and self.controller != "job":
            argv += ["--restart-limit", self.restart_limit]
        if self.heartbeat_timeout is not None and self.controller != "job":
            argv += ["--heartbeat-timeout", str(self.heartbeat_timeout)]
        if self.setup_timeout is not None and self.controller != "job":
            argv += ["--setup-timeout", str(self.setup_timeout)]
        if self.curve is not None and self.controller != "job":
            argv += ["--curve" if self.curve else "--insecure-plaintext"]
        try:
            env = {**os.environ, **self._traits_env} if self._traits_env else None
            self._process = KernelProcess(argv, pass_fds=[write_fd], env=env)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._ready_fd = read_fd

    def _record_args(self) -> list[str]:
        args = [] if self.db else ["--no-db"]
        args += ["--durability", self.durability]
        if self.restore:
            args.append("--restore")
            if not isinstance(self.restore, bool):
                args += ["--file", str(self.restore)]
        return args

    def restore_sync(self, *, timeout: float = RESTORE_WAIT) -> Client:
        """Start a controller that takes over a dead one's cluster (``restore=``) and
        wait up to ``timeout`` seconds for its engines to re-attach; the client. Engines
        that do not come back (they died too) are not waited for beyond that."""
        if not self.restore:
            raise ValueError("restore_sync needs Cluster(restore=True or a cluster file)")
        self.start_cluster_sync(0)
        assert self.cluster_file is not None
        client = self._connect()
        from ..controller._engines_file import read_engines

        known = len(read_engines(self.cluster_file))
        client.pump_until_engines(known, timeout, alive=self._controller_alive)
        return client

    def _read_ready(self) -> None:
        assert self._ready_fd is not None
        with open(self._ready_fd, encoding="utf-8") as pipe:
            self._ready_fd = None
            line = pipe.readline().strip()
        if not line:
            self._fail("the controller exited before serving")
        self.cluster_file = Path(line)

    def _fail(self, what: str) -> None:
        message = self._explain(what)
        self._stop_now()
        raise ClusterUnavailable(message)

    def _explain(self, what: str) -> str:
        """``what``, then the controller's exit and its launcher's last word (or, if it
        said nothing, the controller's last output)."""
        process = self._process
        detail = ""
        if process is not None:
            code = process.returncode
            if code is not None:
                detail = f" (the controller {describe_exit(code)})"
            status = last_status(process.output_tail(STATUS_TAIL))
            tail = process.output_tail().strip()
            if status is not None:
                printed = tail_of(Path(status.log)) if status.log else ""
                detail += f"; the {self.engines} launcher: {status.describe(printed)}"
            elif tail:
                detail += f"; the controller's last output:\n{tail}"
        return f"{what}{detail}"

    def start_cluster_sync(self, n: int | None = None, *, timeout: float = START_TIMEOUT) -> None:
        """Start the controller (which starts ``n`` engines); returns once it serves."""
        self._spawn(self.n if n is None else n)
        assert self._ready_fd is not None
        if not select.select([self._ready_fd], [], [], timeout)[0]:
            self._fail(f"the controller did not start within {timeout:g} s")
        self._read_ready()

    async def start_cluster(self, n: int | None = None, *, timeout: float = START_TIMEOUT) -> None:
        """:meth:`start_cluster_sync` on the caller's loop."""
        self._spawn(self.n if n is None else n)
        assert self._ready_fd is not None
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self._ready_fd, readable.set)
        try:
            async with asyncio.timeout(timeout):
                await readable.wait()
        except TimeoutError:
            self._fail(f"the controller did not start within {timeout:g} s")
        finally:
            if self._ready_fd is not None:
                loop.remove_reader(self._ready_fd)
        self._read_ready()

    def connect_client_sync(self) -> Client:
        """A :class:`Client` of this started cluster, without waiting for engines
        (ipyparallel's; ``rc.wait_for_engines(n)`` waits). The cluster keeps it: the same
        one is returned again, and :meth:`stop_cluster_sync` closes it."""
        if self._process is None or self.cluster_file is None:
            raise ClusterUnavailable("this cluster is not started: start_cluster_sync() first")
        return self._client or self._connect()

    async def connect_client(self) -> Client:
        """:meth:`connect_client_sync` (connecting does not block the loop for long)."""
        return self.connect_client_sync()

    def _connect(self) -> Client:
        from ..client._pool_client import Client

        assert self.cluster_file is not None
        self._client = Client(self.cluster_file)
        if self.supervise:
            self._client._controller.supervisor = self
        return self._client

    # -- supervision (``supervise=True``) ----------------------------------------------

    def controller_exited(self) -> bool:
        process = self._process
        return process is not None and not process.is_alive()

    def revive(self, timeout: float = 10.0) -> bool:
        """Start the controller again with ``--restore`` (same addresses, its records):
        called from the client's wait when the controller process has exited."""
        process, path = self._process, self.cluster_file
        if process is None or path is None or not path.exists():
            return False  # stopped on purpose, or nothing to restore from
        print(
            f"[loom] the controller {describe_exit(process.returncode or 0)}; restarting it"
            " (--restore)",
            file=sys.stderr,
            flush=True,
        )
        process.reap_blocking()
        process.close()
        self._process = None
        restore, self.restore = self.restore, path
        try:
            self.start_cluster_sync(0, timeout=timeout)
        except ClusterUnavailable as exc:
            print(f"[loom] the controller could not be restarted: {exc}", file=sys.stderr)
            return False
        finally:
            self.restore = restore
        self.revived += 1
        return True

    def start_and_connect_sync(
        self, n: int | None = None, *, timeout: float = START_TIMEOUT
    ) -> Client:
        """Start the cluster and return a :class:`Client` once ``n`` engines registered;
        :class:`ClusterUnavailable`, with everything stopped, if that fails or times out."""
        started = time.monotonic()
        count = self.n if n is None else n
        self.start_cluster_sync(count, timeout=timeout)
        client = self._connect()
        left = max(0.0, timeout - (time.monotonic() - started))
        if not client.pump_until_engines(count, left, alive=self._launching):
            self._fail(self._shortfall(client, count, timeout))
        return client

    def wait_for_engines(self, n: int | None = None, *, timeout: float = START_TIMEOUT) -> Client:
        """Wait until ``n`` engines (default: this cluster's) registered; the client.

        Ends early if the controller exits or its launcher fails. Raises
        :class:`ClusterUnavailable` saying which engines came up and what the launcher
        said (a job still pending, a command that failed and its output); the cluster
        keeps running (stop it with :meth:`stop_cluster_sync`).
        """
        if self._process is None or self.cluster_file is None:
            raise ClusterUnavailable("this cluster is not started")
        client = self._client or self._connect()
        count = self.n if n is None else n
        if not client.pump_until_engines(count, timeout, alive=self._launching):
            raise ClusterUnavailable(self._explain(self._shortfall(client, count, timeout)))
        return client

    async def start_and_connect(
        self, n: int | None = None, *, timeout: float = START_TIMEOUT
    ) -> Client:
        """:meth:`start_and_connect_sync` on the caller's loop."""
        started = time.monotonic()
        count = self.n if n is None else n
        await self.start_cluster(count, timeout=timeout)
        client = self._connect()
        deadline = started + timeout
        while len(client._links) < count and self._launching():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            client._request_engines()  # as pump_until_engines: a PUB may drop the first news
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(REQUERY, left)):
                    await client._pump.wait_until(
                        lambda: len(client._links) >= count or not self._launching()
                    )
        if len(client._links) < count:
            self._fail(self._shortfall(client, count, timeout))
        return client

    def _shortfall(self, client: Client, count: int, timeout: float) -> str:
        """Which engines came up, and why the wait ended."""
        ids = sorted(client._links)
        if not ids:
            up = "none is up"
        elif len(ids) == 1:
            up = f"engine {ids[0]} is up"
        else:
            up = f"engines {', '.join(map(str, ids))} are up"
        if not self._controller_alive():
            why = "the controller exited while engines were starting"
        elif self._launcher_failed():
            why = "the launcher failed"
        else:
            why = f"the wait ended after {timeout:g} s"
        return f"{len(ids)} of {count} engines registered ({up}): {why}"

    def _controller_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def _launcher_failed(self) -> bool:
        status = self.launcher_status
        return status is not None and status.state == "failed"

    def _launching(self) -> bool:
        """Whether waiting for engines can still succeed."""
        return self._controller_alive() and not self._launcher_failed()

    # -- stopping -------------------------------------------------------------------

    def release(self) -> None:
        """Forget the (detached) controller without stopping it: it serves on."""
        if self._client is not None:
            self._client.close()
            self._client = None
        process, self._process = self._process, None
        if process is not None:
            process.close()

    def stop_cluster_sync(self) -> None:
        """Stop the controller and every engine it started; close the client."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._stop_now()

    async def stop_cluster(self) -> None:
        """:meth:`stop_cluster_sync` (the controller exits within a few seconds)."""
        self.stop_cluster_sync()

    def _stop_now(self) -> None:
        if self._ready_fd is not None:
            os.close(self._ready_fd)
            self._ready_fd = None
        process, self._process = self._process, None
        if process is None:
            return
        if process.is_alive():
            process.send_signal(signal.SIGTERM)  # the controller stops its engines
            wait_pid_exit(process.pid, STOP_TIMEOUT)
        process.reap_blocking()  # SIGKILLs the group if it is still there
        process.close()
        self._clean_after_crash()

    def _clean_after_crash(self) -> None:
        """A controller that died without cleaning up (SIGKILL) left its file and its
        engines, which outlive it for a grace period: stop those on this host now."""
        path = self.cluster_file
        if path is None or not path.exists():
            return
        from kernel.protocol import ConnectionFileError

        from ..controller._durable import remove_records
        from ..controller._engines_file import stop_orphans
        from ..protocol._controller_info import ControllerInfo
        from ..protocol._shm import remove_cluster_dir

        stop_orphans(path)
        remove_records(path)
        with contextlib.suppress(ConnectionFileError):
            info = ControllerInfo.read(path)
            if info.transport == "ipc" and Path(info.ip).name.startswith("loom-"):
                shutil.rmtree(info.ip, ignore_errors=True)
            remove_cluster_dir(info.cluster_id)  # its shared-memory buffers (protocol/_shm.py)
        path.unlink(missing_ok=True)

    # -- context managers -----------------------------------------------------------

    def __enter__(self) -> Client:
        return self.start_and_connect_sync()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_cluster_sync()

    async def __aenter__(self) -> Client:
        return await self.start_and_connect()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_cluster()
