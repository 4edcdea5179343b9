"""``Cluster``: a controller and N local engines, started and stopped from Python.

Theory of operation
-------------------
``start_cluster`` spawns ``python -P -m parallel.controller -n N`` as a
:class:`kernel.client.KernelProcess` (own process group, pidfd exit watch, output kept
for error messages) with a pipe on which the controller writes its cluster file's path
once it serves, and with ``--parent`` set to this process, so a script killed by any
means takes its cluster with it. The controller starts the engines; connecting waits
until ``n`` of them have registered, racing the controller's exit, so a cluster that
cannot start says why within its timeout instead of hanging.

Blocking methods need no event loop (``select`` on the pipe, the client's pump), so
they work in scripts and inside a running kernel cell; the ``async`` twins wait on the
caller's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from kernel.client import KernelProcess, describe_exit, wait_pid_exit

from .._errors import ClusterUnavailable
from ..client._pool_client import REQUERY

if TYPE_CHECKING:
    from ..client._pool_client import Client

__all__ = ["Cluster"]

#: Seconds to wait for the controller to serve and the engines to register, by default.
START_TIMEOUT = 60.0
#: Seconds the controller gets to stop its engines before it is killed.
STOP_TIMEOUT = 10.0


class Cluster:
    """A local cluster: ``Cluster(n=4)``; see the module docstring.

    ``with Cluster(n=4) as rc:`` starts it and gives a connected :class:`Client`, and
    stops everything it started on exit; so does ``async with``.
    """

    def __init__(
        self,
        n: int | None = None,
        *,
        ip: str = "127.0.0.1",
        engines: str = "local",
        transport: str = "ipc",
        detached: bool = False,
    ):
        """``transport="ipc"`` (the default for local engines): socket files in an
        owner-only directory, so only this user can connect, and large buffers skip their
        own digest; ``"tcp"``: sockets on ``ip``. ``detached``: the cluster outlives this
        process (``loom cluster start``); otherwise it stops when this process exits."""
        if engines != "local":
            raise ValueError(f"engines={engines!r}: only 'local' engines exist so far")
        if transport not in ("ipc", "tcp"):
            raise ValueError(f"transport must be 'ipc' or 'tcp', not {transport!r}")
        self.transport = transport
        self.detached = detached
        self.n = (os.cpu_count() or 1) if n is None else n
        if self.n < 0:
            raise ValueError("n must be 0 or more")
        self.ip = ip
        self.cluster_file: Path | None = None
        self._process: KernelProcess | None = None
        self._ready_fd: int | None = None
        self._client: Client | None = None

    def __repr__(self) -> str:
        state = "running" if self._process is not None and self._process.is_alive() else "stopped"
        return f"<Cluster n={self.n} {state} file={self.cluster_file}>"

    # -- starting -------------------------------------------------------------------

    def _spawn(self, n: int) -> None:
        if self._process is not None and self._process.is_alive():
            raise RuntimeError("this cluster is already running")
        read_fd, write_fd = os.pipe()
        argv = [
            sys.executable, "-P", "-m", "parallel.controller",
            "-n", str(n), "--ip", self.ip, "--transport", self.transport,
            "--ready-fd", str(write_fd),
        ]  # fmt: skip
        if not self.detached:
            argv += ["--parent", str(os.getpid())]
        try:
            self._process = KernelProcess(argv, pass_fds=[write_fd])
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._ready_fd = read_fd

    def _read_ready(self) -> None:
        assert self._ready_fd is not None
        with open(self._ready_fd, encoding="utf-8") as pipe:
            self._ready_fd = None
            line = pipe.readline().strip()
        if not line:
            self._fail("the controller exited before serving")
        self.cluster_file = Path(line)

    def _fail(self, what: str) -> None:
        process = self._process
        detail = ""
        if process is not None:
            code = process.returncode
            if code is not None:
                detail = f" (it {describe_exit(code)})"
            tail = process.output_tail().strip()
            if tail:
                detail += f"; its last output:\n{tail}"
        self._stop_now()
        raise ClusterUnavailable(f"{what}{detail}")

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

    def _connect(self) -> Client:
        from ..client._pool_client import Client

        assert self.cluster_file is not None
        self._client = Client(self.cluster_file)
        return self._client

    def start_and_connect_sync(
        self, n: int | None = None, *, timeout: float = START_TIMEOUT
    ) -> Client:
        """Start the cluster and return a :class:`Client` once ``n`` engines registered."""
        started = time.monotonic()
        count = self.n if n is None else n
        self.start_cluster_sync(count, timeout=timeout)
        client = self._connect()
        left = max(0.0, timeout - (time.monotonic() - started))
        if not client.pump_until_engines(count, left, alive=self._controller_alive):
            if not self._controller_alive():
                self._fail("the controller exited while engines were starting")
            self._fail(f"{len(client._links)} of {count} engines registered within {timeout:g} s")
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
        while not self._engines_up(client, count):
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"{len(client._links)} of {count} engines registered in {timeout:g} s")
            client._request_engines()  # as pump_until_engines: a PUB may drop the first news
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(REQUERY, left)):
                    await client._pump.wait_until(lambda: self._engines_up(client, count))
        return client

    def _controller_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def _engines_up(self, client: Client, count: int) -> bool:
        """Enough engines, or the controller died (then :meth:`_fail` says so)."""
        process = self._process
        if process is not None and not process.is_alive():
            self._fail("the controller exited while engines were starting")
        return len(client._links) >= count

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
