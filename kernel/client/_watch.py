"""``KernelWatcher``: the one answer to "has this kernel died?".

Theory of operation
-------------------
Two kinds of evidence, combined by one rule for every front end (the console,
``loom run``, and the parallel controller for its engines):

the process
    When we own the kernel's process (a :class:`KernelProcess`), its exit,
    learnt within milliseconds from its pidfd, is death; nothing else is. A
    process of ours that is alive but silent is *not responding*, never dead:
    a SIGSTOPped kernel resumes on SIGCONT.
the heartbeat
    The client's :class:`HeartbeatMonitor` says when echoes stop (none for its
    ``grace`` seconds) and when they resume; the owner feeds those transitions
    to :meth:`KernelWatcher.heartbeat_changed`. Silence alone proves nothing.
    For a kernel whose process is not ours (``--existing``, a remote engine)
    the watcher then connects to the heartbeat port over TCP: a process that
    still exists, even a stopped one, keeps its listening socket and the
    operating system completes the handshake for it, so an accepted connection
    means *not responding*; a refused one means nothing listens any more:
    *dead*. (An ``ipc`` transport cannot be probed: silence stays *not
    responding*.)

An echo after a silence the watcher reported ends it (:class:`HeartbeatBack`);
for a kernel that is not ours that can follow a death too, as its owner may
restart it on the same ports.

The watcher reports conclusions, one event each, in the order the evidence
came (a silence is diagnosed before the next transition is looked at), and
decides nothing about them: the console offers a restart, ``loom run`` stops.
It does not know why a process exited either: an owner that restarts or stops
the kernel ignores the :class:`KernelExited` it caused, or first points the
watcher elsewhere (:meth:`KernelWatcher.watch_process`), after which the old
process's exit is not reported. Every report comes from the task running
:meth:`KernelWatcher.run`, which owns all the watcher's tasks; no thread is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._process import describe_exit

if TYPE_CHECKING:
    from kernel.protocol import ConnectionInfo

    from ._process import KernelProcess

__all__ = [
    "HeartbeatBack",
    "HeartbeatLost",
    "KernelExited",
    "KernelWatcher",
    "WatchEvent",
    "port_refuses",
]

#: Seconds a TCP probe of the heartbeat port may take before it counts as accepted.
PROBE_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class KernelExited:
    """The kernel is dead.

    ``exit_code`` is the status of a process of ours; it is None for a kernel
    that is not ours, whose heartbeat stopped and whose ports are closed.
    ``reason`` is a predicate for "the kernel ...": ``"was killed by SIGKILL"``,
    ``"stopped answering its heartbeat and its ports are closed"``.
    """

    reason: str
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatLost:
    """The heartbeat is silent, but the kernel still exists: it is not responding.

    ``reason`` is a predicate for "it ...": ``"is stopped (SIGSTOP?)"``,
    ``"does not answer its heartbeat"``.
    """

    reason: str


@dataclass(frozen=True, slots=True)
class HeartbeatBack:
    """The heartbeat answers again after a reported silence (or death of a kernel not ours)."""


WatchEvent = KernelExited | HeartbeatLost | HeartbeatBack


class KernelWatcher:
    """Watches one kernel: its process if ``process`` is given, its heartbeat as fed.

    ``report`` is called with each :data:`WatchEvent`, from the task running
    :meth:`run`. ``info`` is needed to probe the ports of a kernel that is not
    ours (without it, and without a process, silence is *not responding*).
    """

    def __init__(
        self,
        report: Callable[[WatchEvent], None],
        *,
        info: ConnectionInfo | None = None,
        process: KernelProcess | None = None,
        probe_timeout: float = PROBE_TIMEOUT,
    ) -> None:
        self.info = info
        self.probe_timeout = probe_timeout
        self._report = report
        self._process = process
        self._heartbeats: asyncio.Queue[bool] = asyncio.Queue()
        self._new_process = asyncio.Event()
        self._silence_reported = False

    @property
    def process(self) -> KernelProcess | None:
        """The process watched now (None: the kernel is not ours, or is between processes)."""
        return self._process

    def watch_process(self, process: KernelProcess | None) -> None:
        """Watch ``process`` from now on, instead of the one watched so far.

        The previous process's exit is then not reported: call this with None
        before restarting a kernel, and with the new process afterwards.
        """
        self._process = process
        self._silence_reported = False
        self._new_process.set()

    def heartbeat_changed(self, responsive: bool) -> None:
        """Feed a transition of the heartbeat (``KernelClient.on_heartbeat``)."""
        self._heartbeats.put_nowait(responsive)

    async def run(self) -> None:
        """Watch until cancelled, reporting what the evidence says (module docstring)."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch_processes(), name="loom-watch-process")
            tg.create_task(self._watch_heartbeat(), name="loom-watch-heartbeat")

    # -- the process ------------------------------------------------------------

    async def _watch_processes(self) -> None:
        while True:
            self._new_process.clear()
            process = self._process
            code = None if process is None else await self._exit_unless_replaced(process)
            if code is not None and process is self._process:
                # Still "the" process, now exited: a silence is then no news either.
                self._report(KernelExited(describe_exit(code), code))
            await self._new_process.wait()  # at once if it was replaced meanwhile

    async def _exit_unless_replaced(self, process: KernelProcess) -> int | None:
        """``process``'s exit status; None if :meth:`watch_process` came first, or the
        process was closed (let go by its manager) while still running."""
        async with asyncio.TaskGroup() as tg:
            exited = tg.create_task(_exit_status(process))
            replaced = tg.create_task(self._new_process.wait())
            await asyncio.wait({exited, replaced}, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()  # a no-op for the one that is done
            replaced.cancel()
        return None if exited.cancelled() else exited.result()

    # -- the heartbeat ----------------------------------------------------------

    async def _watch_heartbeat(self) -> None:
        while True:
            responsive = await self._heartbeats.get()
            if responsive:
                if self._silence_reported:
                    self._silence_reported = False
                    self._report(HeartbeatBack())
                continue
            event = await self._diagnose_silence()
            if event is not None:
                self._silence_reported = True
                self._report(event)

    async def _diagnose_silence(self) -> WatchEvent | None:
        """What a silent heartbeat means (None: nothing to report)."""
        process = self._process
        if process is not None:
            if not process.is_alive():
                return None  # the exit is the news, and _watch_processes reports it
            if process.is_stopped():
                return HeartbeatLost("is stopped (SIGSTOP?)")
            return HeartbeatLost("does not answer its heartbeat")
        if await self._ports_closed():
            return KernelExited("stopped answering its heartbeat and its ports are closed")
        return HeartbeatLost("does not answer its heartbeat")

    async def _ports_closed(self) -> bool:
        info = self.info
        if info is None or info.transport != "tcp":
            return False  # nothing to probe: silence is all we know
        return await port_refuses(info.ip, info.hb_port, self.probe_timeout)


async def _exit_status(process: KernelProcess) -> int | None:
    """``process.wait()``, or its status so far (None: running) once it is closed."""
    try:
        return await process.wait()
    except RuntimeError:  # wait() on a closed process: its manager has let it go
        return process.returncode


async def port_refuses(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """True if nothing accepts TCP connections on ``host:port`` (within ``timeout`` s).

    A stopped process still has its listening sockets, and the operating
    system completes the handshake for it; a dead one has none. A probe that
    times out, or a name that does not resolve, counts as accepted (not proof
    of death).
    """
    import ipaddress  # only once a silence is diagnosed: not on the console's start-up path

    try:
        ipaddress.ip_address(host)
    except ValueError:
        # asyncio would resolve a name in its thread pool: resolve it here
        # instead (once per silence; blocking briefly is fine).
        try:
            host = socket.gethostbyname(host)
        except OSError:
            return False
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return False
    except OSError:
        return True
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return False
