"""``KernelManager``: launch, interrupt, restart and shut down one kernel process.

Theory of operation
-------------------
``start`` picks five free loopback ports, writes a connection file (mode 0600,
in the Jupyter runtime dir), launches the kernelspec's command and waits until
the kernel's heartbeat echoes, which (for ipykernel) means every port is bound.
Picking a port means binding port 0 and closing the socket again, so another
process can take the port before the kernel binds it; the kernel then exits
during startup, and ``start`` retries with new ports (``_START_ATTEMPTS`` in
all) before raising :class:`KernelStartError` with the exit status and the
tail of the kernel's output. (If only the heartbeat port is stolen, ipykernel
survives with a dead heartbeat thread; ``start`` then times out.)
``launch`` does the spawning part alone, synchronously and without importing
pyzmq, so a caller can let the kernel boot while it does work of its own;
``start`` then only waits.

Every wait on the kernel races its exit, learnt from a pidfd without threads
(see :mod:`kernel.client._process`), so a kernel that dies is noticed at once rather
than after a timeout. ``restart`` reuses the same ports and connection file,
so connected clients' ZeroMQ sockets simply reconnect to the new process.

``shutdown`` asks politely (``shutdown_request`` on control), waits, then
sends SIGTERM and finally SIGKILL to the kernel's whole process group, reaps
it and removes the connection file; it is idempotent and leaves no process
behind (processes the kernel started in its own group are killed too).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from string import Template
from types import TracebackType
from typing import TYPE_CHECKING

from kernel.protocol import ConnectionInfo

from ._errors import KernelDied, KernelError, KernelStartError
from ._kernelspec import KernelSpec, format_kernel_cmd, get_kernel_spec
from ._process import KernelProcess, ProcessExited, describe_exit, exited_within, until_exit

if TYPE_CHECKING:
    from kernel.protocol import JSONDict

    from ._client import KernelClient

__all__ = ["KernelManager", "start_kernel"]

log = logging.getLogger("loom.manager")

#: Launches tried by ``start`` before giving up (each with fresh ports).
_START_ATTEMPTS = 3
#: Seconds between SIGTERM and SIGKILL.
_TERM_GRACE = 1.0
#: Seconds to wait for a SIGKILLed process to be reapable (it may be in uninterruptible sleep).
_KILL_WAIT = 5.0
#: Lines of kernel output quoted in a start error.
_TAIL_LINES = 20


class ProcessExitedDuringStart(KernelStartError):
    """The kernel exited before its heartbeat answered: maybe a lost port race, worth a retry."""


def pick_ports(ip: str = "127.0.0.1", count: int = 5) -> list[int]:
    """``count`` distinct ports that were free on ``ip`` a moment ago.

    All sockets stay bound until every port is chosen, so none repeats. The
    ports are free again once this returns, which is the race ``start`` retries on.
    """
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((ip, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class KernelManager:
    """Owns one kernel process (over restarts) and its connection file.

    Not started by construction: call :meth:`start`, or use ``async with``
    (starts, then shuts down on exit), or :func:`start_kernel` (also connects
    a ready client).
    """

    def __init__(
        self,
        kernel_name: str = "python3",
        *,
        spec: KernelSpec | None = None,
        extra_env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        ip: str = "127.0.0.1",
    ) -> None:
        self.kernel_name = spec.name if spec is not None else kernel_name
        self.extra_env = dict(extra_env or {})
        self.cwd = cwd
        self.ip = ip
        self._spec = spec
        self._info: ConnectionInfo | None = None
        self._connection_file: Path | None = None
        self._process: KernelProcess | None = None
        self._last_returncode: int | None = None
        self._launched = False  # by launch(), and start() has yet to wait for it

    # -- state ----------------------------------------------------------------

    @property
    def spec(self) -> KernelSpec:
        """The kernelspec, looked up on first use (raises :class:`KernelSpecError`)."""
        if self._spec is None:
            self._spec = get_kernel_spec(self.kernel_name)
        return self._spec

    @property
    def info(self) -> ConnectionInfo:
        """The connection info of the running kernel; :class:`KernelError` before ``start``."""
        if self._info is None:
            raise KernelError("the kernel has not been started")
        return self._info

    @property
    def connection_file(self) -> Path:
        """The connection file; :class:`KernelError` before ``start`` or after ``shutdown``."""
        if self._connection_file is None:
            raise KernelError("the kernel has no connection file (not started or shut down)")
        return self._connection_file

    @property
    def process(self) -> KernelProcess | None:
        """The current kernel process, or None when none is running under our care."""
        return self._process

    def is_alive(self) -> bool:
        """True while the kernel process exists (including while it is stopped)."""
        return self._process is not None and self._process.is_alive()

    async def wait_exit(self) -> int:
        """Wait for the current kernel process to exit; return its exit status.

        Learns of the exit within milliseconds (pidfd). Exits caused by this
        manager (``restart``, ``shutdown``) also end the wait, so an owner that
        restarts should ignore exits it caused. Raises :class:`KernelError` if
        no kernel was ever started.
        """
        if self._process is None:
            if self._last_returncode is None:
                raise KernelError("the kernel has not been started")
            return self._last_returncode
        return await self._process.wait()

    # -- start ----------------------------------------------------------------

    def launch(self) -> ConnectionInfo:
        """Spawn the kernel now and return at once, without waiting for it.

        :meth:`start` then only waits (retrying with new ports as usual if the
        kernel exits during startup). This is for callers with work of their
        own to do while the kernel boots: the console launches its kernel
        before it imports its UI. Imports no pyzmq (the manager imports it
        when it first talks to the kernel), so it is cheap to call early.
        Raises :class:`KernelSpecError`, or :class:`KernelStartError` if the
        command cannot be spawned (nothing is left behind).
        """
        if self._process is not None:
            raise KernelError("the kernel is already running")
        try:
            info = self._spawn(self.spec)
        except BaseException:
            self._abandon_start()
            raise
        self._launched = True
        return info

    # A budget, not a plain deadline: running out kills the kernel and reports its
    # output, which a caller's asyncio.timeout could not do (hence ASYNC109 off).
    async def start(self, timeout: float = 60.0) -> ConnectionInfo:
        """Launch the kernel (unless :meth:`launch` did) and return once its ports are bound.

        Returns the connection info (also written to :attr:`connection_file`).
        The kernel may still be initializing: :meth:`wait_ready` with a client
        waits for it to answer requests. Raises :class:`KernelSpecError`, or
        :class:`KernelStartError` if it cannot be launched, exits during
        startup ``_START_ATTEMPTS`` times, or its heartbeat is silent for ``timeout``.
        """
        launched, self._launched = self._launched, False
        if self._process is not None and not launched:
            raise KernelError("the kernel is already running")
        spec = self.spec
        try:
            async with asyncio.timeout(timeout):
                for attempt in range(1, _START_ATTEMPTS + 1):
                    info = self.info if launched and attempt == 1 else self._spawn(spec)
                    try:
                        await self._until_bound(info, f" (attempt {attempt} of {_START_ATTEMPTS})")
                        return info
                    except ProcessExitedDuringStart as exc:
                        if attempt == _START_ATTEMPTS:
                            raise KernelStartError(str(exc)) from None
                        log.debug("start attempt %d failed, retrying: %s", attempt, exc)
            raise AssertionError("unreachable")  # the loop returns or raises
        except TimeoutError:
            error = self._start_error(f"did not answer its heartbeat within {timeout} s")
            self._abandon_start()
            raise error from None
        except BaseException:
            self._abandon_start()
            raise

    def _abandon_start(self) -> None:
        self._discard_process()
        self._remove_connection_file()

    def _spawn(self, spec: KernelSpec, info: ConnectionInfo | None = None) -> ConnectionInfo:
        """Start the kernel process on ``info`` (default: new ports, a new connection file).

        Raises :class:`KernelStartError` if it cannot be spawned.
        """
        if info is None:
            shell, iopub, stdin, control, hb = pick_ports(self.ip)
            info = ConnectionInfo(
                ip=self.ip,
                shell_port=shell,
                iopub_port=iopub,
                stdin_port=stdin,
                control_port=control,
                hb_port=hb,
                key=ConnectionInfo.new_key(),
                kernel_name=spec.name,
            )
            self._connection_file = info.write(self._connection_file)
            self._info = info
        argv = format_kernel_cmd(spec, self.connection_file)
        try:
            self._process = KernelProcess(argv, env=self._kernel_env(spec), cwd=self.cwd)
        except OSError as exc:
            raise KernelStartError(
                f"cannot launch kernel {spec.name!r} ({argv[0]}): {exc}"
            ) from exc
        return info

    async def _until_bound(self, info: ConnectionInfo, note: str = "") -> None:
        """Wait for the heartbeat of the process just spawned.

        Raises :class:`ProcessExitedDuringStart` (and leaves no process) if it exits first.
        """
        from ._heartbeat_monitor import wait_for_heartbeat  # pyzmq: not needed by launch()

        proc = self._require_process()
        try:
            await until_exit(proc, wait_for_heartbeat(info.url("hb")))
        except ProcessExited as exc:
            what = f"{describe_exit(exc.code)} during startup{note}"
            error = self._start_error(what, ProcessExitedDuringStart)
            self._discard_process()
            raise error from None

    def _kernel_env(self, spec: KernelSpec) -> dict[str, str]:
        """``os.environ`` + the spec's ``env`` + ``extra_env`` (later wins).

        ``$VAR`` in the spec's values is substituted, as jupyter_client does.
        """
        env = dict(os.environ)
        context = {**env, **self.extra_env}
        env.update({k: Template(v).safe_substitute(context) for k, v in spec.env.items()})
        env.update(self.extra_env)
        # ipykernel then exits by itself if we die without shutting it down.
        env["JPY_PARENT_PID"] = str(os.getpid())
        if spec.language.lower().startswith("python"):
            # As jupyter_client: an inherited PYTHONEXECUTABLE confuses a Python kernel.
            env.pop("PYTHONEXECUTABLE", None)
        return env

    def _start_error(
        self, what: str, kind: type[KernelStartError] = KernelStartError
    ) -> KernelStartError:
        """``kind("kernel NAME <what>; its last output: ...")``."""
        message = f"kernel {self.kernel_name!r} {what}"
        if self._process is not None:
            lines = self._process.output_tail().rstrip().splitlines()[-_TAIL_LINES:]
            if lines:
                message += "; its last output:\n" + "\n".join(f"    {line}" for line in lines)
        return kind(message)

    async def wait_ready(self, client: KernelClient, timeout: float = 60.0) -> JSONDict:
        """Wait until ``client`` gets answers from the kernel (``client.wait_for_ready``).

        Returns the ``kernel_info_reply`` content. Raises :class:`KernelStartError`
        at once if the kernel exits meanwhile, or after ``timeout`` seconds.
        """
        proc = self._require_process()
        try:
            return await until_exit(proc, client.wait_for_ready(timeout))
        except ProcessExited as exc:
            raise self._start_error(describe_exit(exc.code) + " before it was ready") from None
        except TimeoutError:
            raise self._start_error(f"did not answer kernel_info within {timeout} s") from None

    def _require_process(self) -> KernelProcess:
        if self._process is None:
            raise KernelError("the kernel is not running")
        return self._process

    # -- control --------------------------------------------------------------

    async def interrupt(self, client: KernelClient | None = None) -> None:
        """Interrupt the running cell the way the kernelspec asks.

        ``signal`` mode: SIGINT to the kernel's process group. ``message`` mode:
        ``interrupt_request`` through ``client`` (:class:`KernelError` without one).
        """
        if self.spec.interrupt_mode == "message":
            if client is None:
                raise KernelError(
                    f"kernel {self.kernel_name!r} is interrupted by message: a client is needed"
                )
            await client.interrupt()
            return
        proc = self._require_process()
        if not proc.is_alive():
            raise KernelDied(f"kernel {self.kernel_name!r} is not running")
        proc.send_signal(signal.SIGINT)

    async def shutdown(
        self,
        client: KernelClient | None = None,
        *,
        timeout: float = 5.0,
        now: bool = False,
    ) -> None:
        """Stop the kernel and remove the connection file. Idempotent.

        Unless ``now``, sends ``shutdown_request`` (through ``client``, or a
        short-lived client of our own) and waits up to ``timeout`` seconds for
        the exit; then SIGTERM, then SIGKILL to the process group. Returns once
        the process is reaped.
        """
        try:
            await self._stop_process(client, grace=timeout, now=now, restart=False)
        finally:
            self._remove_connection_file()

    async def restart(
        self,
        client: KernelClient | None = None,
        *,
        now: bool = False,
        shutdown_timeout: float = 5.0,
        timeout: float = 60.0,
    ) -> ConnectionInfo:
        """Replace the kernel process with a new one on the same ports and connection file.

        The old kernel is stopped as by :meth:`shutdown` (gracefully unless
        ``now``). With ``client``, its outstanding requests fail with
        :class:`KernelDied` and this returns once it gets answers from the new
        kernel. There is no retry with other ports (clients are bound to these):
        a failure raises :class:`KernelStartError`.
        """
        info, path = self.info, self.connection_file
        spec = self.spec
        await self._stop_process(client, grace=shutdown_timeout, now=now, restart=True)
        if client is not None:
            client.fail_pending(KernelDied("the kernel was restarted"))
        info.write(path)  # rewrite in case the old kernel or someone else removed it
        try:
            async with asyncio.timeout(timeout):
                self._spawn(spec, info)
                await self._until_bound(info)
                if client is not None:
                    await self.wait_ready(client, timeout)
        except TimeoutError:
            error = self._start_error(f"did not restart within {timeout} s")
            self._discard_process()
            raise error from None
        except BaseException:
            self._discard_process()
            raise
        return info

    # -- stopping -------------------------------------------------------------

    async def _stop_process(
        self, client: KernelClient | None, *, grace: float, now: bool, restart: bool
    ) -> None:
        proc = self._process
        if proc is None:
            return
        try:
            if not now and proc.is_alive() and not proc.is_stopped():
                await self._request_shutdown(proc, client, grace=grace, restart=restart)
            if proc.is_alive():
                log.debug("kernel %d did not exit; sending SIGTERM", proc.pid)
                proc.send_signal(signal.SIGTERM)
                proc.send_signal(signal.SIGCONT)  # a stopped kernel must run to act on TERM
                if not await exited_within(proc, _TERM_GRACE):
                    proc.kill()
                    await exited_within(proc, _KILL_WAIT)
            proc.kill()  # what the kernel left running in its process group
        finally:
            self._discard_process()

    async def _request_shutdown(
        self, proc: KernelProcess, client: KernelClient | None, *, grace: float, restart: bool
    ) -> None:
        """Ask for a clean exit and wait up to ``grace`` seconds for it.

        Never raises for a silent or dead kernel: the caller escalates.
        """

        async def request() -> None:
            from ._client import connect_client

            if client is not None:
                await client.shutdown(restart=restart)
            else:
                async with connect_client(self.info, wait_ready=False) as own:
                    await own.shutdown(restart=restart)
            await proc.wait()

        try:
            async with asyncio.timeout(grace):
                await until_exit(proc, request())
        except ProcessExited:
            pass
        except (TimeoutError, KernelError) as exc:
            log.debug("graceful shutdown of kernel %d failed: %r", proc.pid, exc)

    def _discard_process(self) -> None:
        """Forget the process, killing and reaping it synchronously if still alive.

        Blocking here is the last resort for cancelled or failed async paths; a
        SIGKILLed process is normally reapable within milliseconds.
        """
        proc, self._process = self._process, None
        if proc is not None:
            self._last_returncode = proc.reap_blocking(_KILL_WAIT)
            proc.close()

    def _remove_connection_file(self) -> None:
        if self._connection_file is not None:
            self._connection_file.unlink(missing_ok=True)
            self._connection_file = None

    # -- context manager ------------------------------------------------------

    async def __aenter__(self) -> KernelManager:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()


@asynccontextmanager
async def start_kernel(
    kernel_name: str = "python3",
    *,
    spec: KernelSpec | None = None,
    extra_env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    ip: str = "127.0.0.1",
    startup_timeout: float = 60.0,
    shutdown_timeout: float = 5.0,
) -> AsyncIterator[tuple[KernelManager, KernelClient]]:
    """Start a kernel, connect a ready client, and yield both.

    On exit the kernel is shut down (gracefully, then by force), reaped, and its
    connection file removed, whatever happened inside. Raises
    :class:`KernelSpecError` or :class:`KernelStartError` if it cannot start.
    """
    from ._client import connect_client

    manager = KernelManager(kernel_name, spec=spec, extra_env=extra_env, cwd=cwd, ip=ip)
    await manager.start(startup_timeout)
    try:
        async with connect_client(manager.info, wait_ready=False) as client:
            await manager.wait_ready(client, startup_timeout)
            try:
                yield manager, client
            finally:
                await manager.shutdown(client, timeout=shutdown_timeout)
    finally:
        await manager.shutdown(now=True)  # no-op after a clean shutdown
