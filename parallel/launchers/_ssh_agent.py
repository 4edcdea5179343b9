"""The remote end of the ``ssh`` launcher: ``python -P -m parallel.launchers._ssh_agent``.

Runs on each host, under ``ssh -R SOCKET:CONTROLLER_IP:HUB_PORT``. Reads one JSON line on
stdin (over ssh, so the cluster key is never in any argv): the cluster file's content,
the engine count, the forwarded socket's path and extra environment. Then:

1. its address is the one the ssh connection arrived on (``$SSH_CONNECTION``), which the
   controller's host can reach; engines bind there;
2. a relay listens on that address and carries each connection to the forwarded unix
   socket, i.e. through the ssh tunnel to the controller's hub (engines use the hub only
   to register; clients and the controller's heartbeats reach an engine's own ports);
3. it writes a cluster file for this host (0600, in a private directory) naming the relay
   as the hub, and starts the engines with ``JPY_PARENT_PID`` set to itself;
4. it reports each engine on stdout, which the launcher reads as it comes:
   ``loom agent: started PID UUID`` and ``loom agent: exited PID CODE`` (``CODE`` as
   ``subprocess`` gives it: negative for a signal; it is their parent, so it knows),
   preceded for a failed engine by ``loom agent: output PID "TAIL"`` (its log's end, a
   JSON string: the controller quotes it when it gives up on the engine), and
   reads ``fork UUID`` lines on stdin: one more engine registering with that uuid, the
   replacement of one that died (``SSHLauncher.replace``);
5. when its stdin ends (the launcher stopped, or ssh died: the controller was killed)
   it SIGTERMs the engines, SIGKILLs what is left after a grace, removes its files and
   the engines' connection files, and exits: nothing remains.

If every engine has exited and no replacement is asked for within ``REPLACE_WAIT``
seconds, it exits 1 after printing their last output, so the launcher reports the
failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from kernel.protocol import runtime_dir

#: Seconds engines get after SIGTERM before SIGKILL.
STOP_GRACE = 3.0
#: Seconds the agent waits, once every engine has exited, for a ``fork`` (replacement).
REPLACE_WAIT = 5.0
#: What starts a report line on stdout (the launcher reads these as they come).
REPORT = "loom agent:"
#: How much of a dead engine's log the agent reports (bytes).
OUTPUT_TAIL = 2000


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _relay(
    socket_path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        up_reader, up_writer = await asyncio.open_unix_connection(socket_path)
    except OSError as exc:
        print(f"loom ssh agent: the tunnel {socket_path} refused: {exc}", flush=True)
        writer.close()  # the engine's socket reconnects by itself
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


class Engines:
    """This host's engine processes, each watched by a pidfd and reported on stdout."""

    def __init__(self, cluster_file: Path, env: dict[str, str], logs: Path) -> None:
        self.argv = [sys.executable, "-P", "-m", "parallel.engine", "-f", str(cluster_file)]
        self.env = env
        self.dir = logs
        #: The live engines, by pid.
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: list[Path] = []
        #: pid -> uuid of the live engines.
        self.uuids: dict[int, str] = {}
        #: Set at every start and exit.
        self.changed = asyncio.Event()

    def spawn(self, engine_uuid: str) -> None:
        """Start an engine registering as ``engine_uuid``; its pidfd reports the exit."""
        log = self.dir / f"engine-{engine_uuid}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*self.argv, "--uuid", engine_uuid], env=self.env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=out, start_new_session=True,
            )  # fmt: skip
        self.processes[process.pid] = process
        self.uuids[process.pid] = engine_uuid
        if log not in self.logs:
            self.logs.append(log)
        fd = os.pidfd_open(process.pid)
        asyncio.get_running_loop().add_reader(fd, self._exited, process.pid, fd)
        print(f"{REPORT} started {process.pid} {engine_uuid}", flush=True)
        self.changed.set()

    def _exited(self, pid: int, fd: int) -> None:
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        process = self.processes.pop(pid)
        code = process.wait()
        if code != 0:  # its last lines first, for the controller's give-up notice
            log = self.dir / f"engine-{self.uuids.pop(pid, '')}.log"
            with contextlib.suppress(OSError):
                tail = log.read_bytes()[-OUTPUT_TAIL:].decode("utf-8", "replace")
                print(f"{REPORT} output {pid} {json.dumps(tail.strip())}", flush=True)
        print(f"{REPORT} exited {pid} {code}", flush=True)
        self.changed.set()

    async def none_left(self) -> None:
        """Return once every engine has exited and no replacement came for
        ``REPLACE_WAIT`` seconds."""
        while True:
            while self.processes:
                self.changed.clear()
                await self.changed.wait()
            self.changed.clear()
            try:
                async with asyncio.timeout(REPLACE_WAIT):
                    await self.changed.wait()  # a fork: wait for those again
            except TimeoutError:
                return

    def signal(self, sig: int) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)

    async def stop(self) -> None:
        self.signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_GRACE):
                while self.processes:
                    self.changed.clear()
                    await self.changed.wait()
        self.signal(signal.SIGKILL)
        for process in list(self.processes.values()):
            process.wait()


async def _commands(engines: Engines, pending: bytes) -> None:
    """Serve ``fork UUID`` lines on stdin until it ends (``pending``: read already)."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    fd = sys.stdin.fileno()
    # Non-blocking: the reader callback may set the event once more after the data it
    # saw was read (it is level-triggered), and a blocking read would then hang the loop.
    os.set_blocking(fd, False)
    loop.add_reader(fd, readable.set)
    try:
        while True:
            *lines, pending = pending.split(b"\n")
            for line in lines:
                match line.decode("ascii", "replace").split():
                    case ["fork", engine_uuid] if engine_uuid.isprintable():
                        engines.spawn(engine_uuid)
                    case _:
                        print(f"loom ssh agent: ignored {line[:80]!r}", file=sys.stderr)
            await readable.wait()
            readable.clear()
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                return
            pending += chunk
    finally:
        loop.remove_reader(fd)


async def run(settings: dict[str, Any], pending: bytes = b"") -> int:
    address = os.environ.get("SSH_CONNECTION", "").split()[2:3] or ["127.0.0.1"]
    host = address[0]
    socket_path = str(settings["socket"])
    server = await asyncio.start_server(lambda r, w: _relay(socket_path, r, w), host=host, port=0)
    port = server.sockets[0].getsockname()[1]
    private = Path(tempfile.mkdtemp(prefix="loom-ssh-"))  # 0700
    engines: Engines | None = None
    try:
        cluster = dict(settings["cluster"])
        cluster.update(ip=host, hub_port=port, notify_port=port, pid=os.getpid())
        cluster_file = _write_private(private / "cluster.json", cluster)
        # The engines' environment is ours too, so runtime_dir() below is theirs.
        os.environ.update(settings.get("env", {}))
        env = {**os.environ, "JPY_PARENT_PID": str(os.getpid())}
        engines = Engines(cluster_file, env, private)
        for _ in range(int(settings["n"])):
            engines.spawn(str(uuid.uuid4()))
        pids = ", ".join(map(str, engines.processes))
        print(f"loom ssh agent {os.getpid()} on {host}: engines {pids}", flush=True)
        told = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            loop.add_signal_handler(sig, told.set)
        closed = asyncio.ensure_future(_commands(engines, pending))
        ended = asyncio.ensure_future(engines.none_left())
        stopped = asyncio.ensure_future(told.wait())
        waiting = (closed, ended, stopped)
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        for task in waiting:
            task.cancel()
        await asyncio.wait(waiting)
        if not ended.cancelled() and ended.exception() is None:
            for log in engines.logs:
                print(f"{log.name}: {log.read_text(errors='replace')[-1000:]}", flush=True)
            return 1
        return 0
    finally:
        if engines is not None:
            await engines.stop()
            # An engine stopped by a signal leaves its connection file (with the key):
            # a controller cleans its own host; here this agent does.
            pattern = f"kernel-engine-{cluster['cluster_id']}-*.json"
            for leftover in runtime_dir().glob(pattern):
                leftover.unlink(missing_ok=True)
        server.close()
        shutil.rmtree(private, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(socket_path)


def _write_private(path: Path, data: dict[str, Any]) -> Path:
    """``data`` as JSON in a new file created 0600 (no window in which others may read)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w", encoding="utf-8") as file:
        json.dump(data, file)
    return path


def main() -> int:
    # Read with os.read, not a buffered readline: what follows the line (fork commands)
    # must not sit in a buffer the command loop never sees.
    data = b""
    while b"\n" not in data and (chunk := os.read(sys.stdin.fileno(), 65536)):
        data += chunk
    line, _, pending = data.partition(b"\n")
    try:
        settings = json.loads(line)
    except ValueError:
        print("loom ssh agent: expected one JSON line on stdin", file=sys.stderr)
        return 2
    return asyncio.run(run(settings, pending))


if __name__ == "__main__":
    sys.exit(main())
