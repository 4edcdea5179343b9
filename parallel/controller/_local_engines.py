"""Engines on this machine, started and watched by their controller: the ``local`` launcher.

The engines are forked by one fork server, ``python -P -m parallel.engine --fork N -f
CLUSTER.json`` in a :class:`kernel.client.KernelProcess` (own process group, output kept
for errors): it imports what an engine needs once, and each forked engine skips that
(``parallel.engine._forkserver`` says why: on 2 cores four engines importing it all
kept the start above half a second). The fork server reports ``started PID UUID`` and
``exited PID CODE`` on a pipe; each engine is held by a pidfd from its ``started`` line,
so signals reach exactly it, never a process that took its PID later. Engines do not
carry ``JPY_PARENT_PID``: they outlive a controller that dies, for a grace period
(``parallel.engine._hub_link``), so that ``--restore`` finds them with their namespaces.

Replacement (``can_replace``): the fork server also reads ``fork UUID`` lines on a
command pipe and forks a new engine with that uuid, which registers with the hub as the
engine it replaces (same id). Each engine's stderr goes to ``engine-UUID.log`` in the
launcher's private directory, so the reason an engine died comes with *its* last lines
of output (:meth:`LocalEngines.output_of`). A SIGKILL is reported as an out-of-memory
kill only when the kernel's OOM killer fired in this cgroup meanwhile (``memory.events``):
nothing else tells the two apart.

After ``--restore`` (:meth:`LocalEngines.adopt`), the restored controller's launcher
holds a pidfd on each engine of the dead controller that still runs on this machine: it
is not their parent (their fork server, orphaned, reaps them and reports to no one), so
it cannot say how one ended, only that it did, at once. To replace one it starts a fork
server of its own, with no engines, on the first replacement, and forks there as above.
:meth:`stop` ends the adopted engines as well as its own.

``-P``: a ``parallel.py`` or ``kernel.py`` in the user's working directory must not
shadow Loom's packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from pathlib import Path

from kernel.client import KernelProcess

from ..launchers import LaunchContext, Launcher, LaunchError, LauncherStatus, describe_death
from ._fork_server import ForkServer

__all__ = ["LocalEngines"]

log = logging.getLogger("loom.controller")

#: How long stopping waits for engines to exit after SIGTERM before SIGKILL (seconds).
STOP_GRACE = 2.0
#: After SIGKILL, how long stopping waits for the fork server's last reports (seconds).
KILL_GRACE = 2.0
#: How much of an engine's log is quoted when it dies (bytes).
LOG_TAIL = 2000
#: How an adopted engine (``--restore``) ended, said as such: only its parent saw how.
ADOPTED_EXIT = "exited (a restored controller cannot see how: it is not its parent)"


class LocalEngines(Launcher):
    """The engines one controller forked; every one is gone when :meth:`stop` returns."""

    name = "local"
    can_replace = True

    def __init__(self) -> None:
        self.server: KernelProcess | None = None
        #: Live engines: pid -> pidfd (closed when its ``exited`` line arrives).
        self.engines: dict[int, int] = {}
        #: Every engine the server reported started (for the status line).
        self._started_pids: list[int] = []
        self._none_left = asyncio.Event()
        self._none_left.set()
        self._reports_ended = asyncio.Event()
        #: pid -> uuid of every engine the server started (kept after exit, for reasons).
        self._uuids: dict[int, str] = {}
        #: pid -> how it ended (``describe_death``), once its ``exited`` line arrived.
        self._deaths: dict[int, str] = {}
        #: The pipe ``fork UUID`` lines go to (``None``: stopped, or not started).
        self._commands: int | None = None
        self._log_dir: Path | None = None
        self._stopping = False
        self._oom_kills = _oom_kills()
        #: Engines of a dead controller this one adopted (``--restore``): pid -> pidfd.
        self._adopted: dict[int, int] = {}
        self._adopted_gone = asyncio.Event()
        self._adopted_gone.set()
        #: Set by :meth:`adopt`: the context a fork server started later reports to.
        self._ctx: LaunchContext | None = None
        #: A fork server the controller started before its imports (:meth:`prestarted`).
        self._early: ForkServer | None = None

    async def start(self, n: int, ctx: LaunchContext) -> None:
        """Start the fork server for ``n`` engines (they register with the hub themselves)."""
        if not n:
            return
        self._start_server(n, ctx)

    def prestarted(self, server: ForkServer) -> None:
        """Use ``server``, started by the controller before its own imports (``_main``),
        for the first :meth:`start`; :meth:`stop` ends it if it was never used."""
        self._early = server

    def _start_server(self, n: int, ctx: LaunchContext) -> None:
        """Start the fork server with ``n`` engines (0: it only forks replacements), or
        let the one started early (holding, the file not written then) fork them now."""
        log_dir = ctx.workdir if ctx.workdir.is_dir() else None
        server, self._early = self._early, None
        if server is not None and (server.count, server.cluster_file, server.log_dir) != (
            n,
            ctx.cluster_file,
            log_dir,
        ):  # started for another start than this one (not expected): not used
            server.discard()
            server = None
        if server is None:
            server = ForkServer(n, ctx.cluster_file, log_dir, hold=False)
        if log_dir is not None:
            self._log_dir = log_dir
        assert server.status is not None
        assert server.commands is not None
        self.server = server.process
        self._commands, read_fd = server.commands, server.status
        try:
            if server.hold:
                server.go()
        except BrokenPipeError:  # it died importing: say how, with what it printed
            os.close(read_fd)
            self.server.reap_blocking()
            code = self.server.returncode
            how = describe_death(code) if code is not None else "is gone"
            raise LaunchError(f"the engine fork server {how}", self.server.output_tail()) from None
        finally:
            server.status = server.commands = None  # ours now (stop() closes the commands)
        if n:
            self._none_left.clear()
        ctx.tg.create_task(self._follow(read_fd, n, ctx), name="loom-engine-forkserver")
        ctx.report(LauncherStatus("running", f"{n} local engines, forked by pid {self.server.pid}"))

    async def _follow(self, read_fd: int, n: int, ctx: LaunchContext) -> None:
        """Act on the fork server's reports until it closes the pipe."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while line := await reader.readline():
                match line.split():
                    case [b"started", pid, *rest]:
                        self._started(int(pid), n, ctx, rest[0].decode() if rest else "")
                    case [b"exited", pid, code]:
                        self._exited(int(pid), int(code), ctx)
        finally:
            transport.close()
            self._reports_ended.set()
        server = self.server
        if server is not None:
            status = await server.wait()
            if status != 0:
                tail = server.output_tail().strip()
                how = describe_death(status)
                log.warning("the engine fork server %s; its output:\n%s", how, tail)

    def _started(self, pid: int, n: int, ctx: LaunchContext, engine_uuid: str) -> None:
        with contextlib.suppress(ProcessLookupError):  # gone already: "exited" follows
            self.engines[pid] = os.pidfd_open(pid)
            self._none_left.clear()
            if self._stopping:  # a replacement forked while we stop: it goes too
                signal.pidfd_send_signal(self.engines[pid], signal.SIGTERM)
        self._uuids[pid] = engine_uuid
        self._started_pids.append(pid)
        if len(self._started_pids) == n and self.server is not None:
            pids = ", ".join(map(str, self._started_pids))
            summary = f"{n} local engine processes (pids {pids}), forked by pid {self.server.pid}"
            ctx.report(LauncherStatus("running", summary))

    def _exited(self, pid: int, code: int, ctx: LaunchContext) -> None:
        pidfd = self.engines.pop(pid, None)
        if pidfd is not None:
            os.close(pidfd)
        oom_kills = _oom_kills()
        how = describe_death(code, oom_killed=oom_kills > self._oom_kills)
        self._oom_kills = oom_kills
        self._deaths[pid] = how
        if code != 0:
            tail = self.output_of(pid)
            if tail:
                log.warning("engine pid %d %s; its last output:\n%s", pid, how, tail)
        ctx.engine_exited(pid, how)
        if not self.engines:
            self._none_left.set()

    # -- replacing one engine (Launcher.can_replace) ---------------------------------------

    def uuid_of(self, pid: int) -> str | None:
        return self._uuids.get(pid)

    def output_of(self, pid: int) -> str:
        """The last lines engine ``pid`` wrote to stderr (its log), or ``""``. A crash's
        report (faulthandler's ``Fatal Python error``, innermost frame first) is quoted
        from its start, so the frames that matter are not the ones cut off."""
        engine_uuid = self._uuids.get(pid)
        if self._log_dir is None or not engine_uuid:
            return ""
        try:
            with open(self._log_dir / f"engine-{engine_uuid}.log", "rb") as log_file:
                log_file.seek(0, os.SEEK_END)
                log_file.seek(max(0, log_file.tell() - 8 * LOG_TAIL))
                text = log_file.read().decode("utf-8", "replace")
        except OSError:
            return ""
        crash = text.rfind("Fatal Python error")
        if crash >= 0:
            report = text[crash:]
            if len(report) > LOG_TAIL:  # cut at a line's end
                report = report[:LOG_TAIL].rsplit("\n", 1)[0]
            return report.strip()
        tail = text[-LOG_TAIL:]
        if len(text) > LOG_TAIL and "\n" in tail:  # drop the cut first line
            tail = tail.split("\n", 1)[1]
        return tail.strip()

    def adopt(self, engines: Mapping[int, str], ctx: LaunchContext) -> None:
        """Watch the dead controller's engines on this machine (``pid -> uuid``): each
        one's exit is reported at once, and it is replaced like one of ours."""
        self._ctx = ctx
        if self._log_dir is None and ctx.workdir.is_dir():  # the dead one's: same path
            self._log_dir = ctx.workdir
        loop = asyncio.get_running_loop()
        for pid, engine_uuid in engines.items():
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue  # gone already: it is not known to the hub either
            self._adopted[pid] = pidfd
            self._uuids[pid] = engine_uuid
            loop.add_reader(pidfd, self._adopted_exited, pid, ctx)
        if self._adopted:
            self._adopted_gone.clear()

    def _adopted_exited(self, pid: int, ctx: LaunchContext) -> None:
        pidfd = self._adopted.pop(pid, None)
        if pidfd is None:
            return
        asyncio.get_running_loop().remove_reader(pidfd)
        os.close(pidfd)
        self._deaths[pid] = ADOPTED_EXIT
        ctx.engine_exited(pid, ADOPTED_EXIT)
        if not self._adopted:
            self._adopted_gone.set()

    def replace(self, engine_uuid: str) -> None:
        """Fork a new engine with ``engine_uuid`` (it registers as the one it replaces)."""
        if self.server is None and self._ctx is not None and not self._stopping:
            self._start_server(0, self._ctx)  # restored: our first replacement
        if self._commands is None or self._stopping:
            raise LaunchError("the local launcher is stopping: no engine is replaced")
        try:
            os.write(self._commands, f"fork {engine_uuid}\n".encode("ascii"))
        except (BlockingIOError, BrokenPipeError) as exc:
            raise LaunchError(f"the engine fork server cannot take requests: {exc}") from None

    def _close_commands(self) -> None:
        self._stopping = True
        if self._commands is not None:
            os.close(self._commands)
            self._commands = None

    def _signal_all(self, sig: int) -> None:
        for pidfd in self.engines.values():
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, sig)

    async def stop(self) -> None:
        """SIGTERM every engine, SIGKILL what is left after ``STOP_GRACE``; then the fork
        server, which exits once it has reaped them all."""
        if self._early is not None:  # started early, never told a cluster: forked nothing
            self._early.discard()
            self._early = None
        server = self.server
        self._close_commands()  # no more replacements; the server exits once its engines do
        await self._stop_adopted()
        if server is None:
            return
        for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, KILL_GRACE)):
            if self._none_left.is_set() or self._reports_ended.is_set():
                break
            self._signal_all(sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._none_left.wait()
        if self._reports_ended.is_set():  # the server died: its engines have no reaper
            self._signal_all(signal.SIGKILL)
        for pidfd in self.engines.values():
            os.close(pidfd)
        self.engines.clear()
        if server.is_alive():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE):
                    await server.wait()
        if server.is_alive():
            server.kill()
        server.reap_blocking()
        server.close()

    async def _stop_adopted(self) -> None:
        """SIGTERM the adopted engines, SIGKILL what is left after ``STOP_GRACE``."""
        for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, KILL_GRACE)):
            if self._adopted_gone.is_set():
                return
            for pidfd in self._adopted.values():
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pidfd, sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._adopted_gone.wait()


def _oom_kills() -> int:
    """How many processes the kernel's OOM killer killed in this process's cgroup (v2),
    or 0 where that cannot be read."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as cgroup:
            path = next(line[3:].strip() for line in cgroup if line.startswith("0::"))
        events = Path("/sys/fs/cgroup", path.lstrip("/"), "memory.events").read_text()
    except (OSError, StopIteration):
        return 0
    for line in events.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0
