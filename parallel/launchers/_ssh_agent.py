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
4. when its stdin ends (the launcher stopped, or ssh died) it SIGTERMs the engines,
   SIGKILLs what is left after a grace, removes its files and the engines' connection
   files, and exits: nothing remains.

If every engine exits on its own, it exits 1 after printing their last output, so the
launcher reports the failure.
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
from pathlib import Path
from typing import Any

from kernel.protocol import runtime_dir

#: Seconds engines get after SIGTERM before SIGKILL.
STOP_GRACE = 3.0


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
    """This host's engine processes, each watched by a pidfd."""

    def __init__(self, cluster_file: Path, count: int, env: dict[str, str], logs: Path) -> None:
        argv = [sys.executable, "-P", "-m", "parallel.engine", "-f", str(cluster_file)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        for index in range(count):
            log = logs / f"engine-{index}.log"
            with log.open("wb") as out:
                self.processes.append(
                    subprocess.Popen(
                        argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                        start_new_session=True,
                    )
                )  # fmt: skip
            self.logs.append(log)

    async def all_exited(self) -> None:
        loop = asyncio.get_running_loop()
        for process in self.processes:
            exited = asyncio.Event()
            fd = os.pidfd_open(process.pid)
            loop.add_reader(fd, exited.set)
            try:
                await exited.wait()
            finally:
                loop.remove_reader(fd)
                os.close(fd)
            process.wait()

    def signal(self, sig: int) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)

    async def stop(self) -> None:
        self.signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_GRACE):
                await self.all_exited()
        self.signal(signal.SIGKILL)
        for process in self.processes:
            process.wait()


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    fd = sys.stdin.fileno()
    loop.add_reader(fd, readable.set)
    try:
        while True:
            await readable.wait()
            readable.clear()
            if not os.read(fd, 4096):
                return
    finally:
        loop.remove_reader(fd)


async def run(settings: dict[str, Any]) -> int:
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
        engines = Engines(cluster_file, int(settings["n"]), env, private)
        pids = ", ".join(str(p.pid) for p in engines.processes)
        print(f"loom ssh agent {os.getpid()} on {host}: engines {pids}", flush=True)
        told = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            loop.add_signal_handler(sig, told.set)
        closed = asyncio.ensure_future(_stdin_closed())
        ended = asyncio.ensure_future(engines.all_exited())
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
    line = sys.stdin.buffer.readline()
    try:
        settings = json.loads(line)
    except ValueError:
        print("loom ssh agent: expected one JSON line on stdin", file=sys.stderr)
        return 2
    return asyncio.run(run(settings))


if __name__ == "__main__":
    sys.exit(main())
