"""The ``local`` launcher's fork server process, as its controller starts and holds it.

Theory of operation
-------------------
The fork server (``python -P -m parallel.engine --fork N``, ``parallel.engine._forkserver``)
spends ~0.25 s of CPU importing what an engine needs before it can fork one. Its
controller spends about as much importing asyncio, pyzmq, the hub and the records,
binding and writing the cluster file. Started one after the other, both came before the
first engine registered. So ``python -m parallel.controller`` starts the fork server as
its first act (``_main``: once its arguments are parsed, before it imports anything
else), with ``--hold``: the server imports while the controller starts, on the other
core, then waits on its command pipe. Once the cluster file is written the launcher
(:class:`~._local_engines.LocalEngines`) says ``go`` (:meth:`ForkServer.go`) and the
server forks the engines.

The server is given the file's path (``-f``) when it starts, although the file does not
exist yet: its engines carry that path in their command line, by which ``loom cluster
stop`` and ``--restore`` know a live engine of the cluster from a reused pid
(``_engines_file._is_engine``). So the controller picks its cluster id and the file's
path before it starts the server (``default_cluster_file``).

This module imports no more than ``KernelProcess`` needs (no asyncio, no dataclasses):
what it imports delays the server's start.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from kernel.client._process import KernelProcess

__all__ = ["ForkServer", "default_cluster_file", "new_cluster_id"]


def new_cluster_id() -> str:
    """A new cluster id: 12 hex digits, as ``uuid4().hex[:12]`` (``uuid`` not imported)."""
    return os.urandom(6).hex()


def default_cluster_file(cluster_id: str) -> Path:
    """``ControllerInfo(cluster_id=...).default_path`` without importing it (nor
    ``kernel.protocol``: ~25 ms of CPU); a test holds the two equal. The runtime
    directory's rules are ``kernel.protocol.runtime_dir``'s."""
    env = os.environ.get("JUPYTER_RUNTIME_DIR")
    if env:
        runtime = Path(env)
    elif data := os.environ.get("JUPYTER_DATA_DIR"):
        runtime = Path(data) / "runtime"
    else:
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        runtime = Path(xdg) / "jupyter" / "runtime"
    return runtime / f"loom-cluster-{cluster_id}.json"


class ForkServer:
    """A fork server for ``count`` engines of the cluster in ``cluster_file``, holding
    until :meth:`go` (``hold=False``: forking as soon as it has imported)."""

    def __init__(
        self, count: int, cluster_file: Path, log_dir: Path | None, *, hold: bool = True
    ) -> None:
        read_fd, write_fd = os.pipe()
        command_read, command_write = os.pipe()
        argv = [sys.executable, "-P", "-m", "parallel.engine", "-f", str(cluster_file)]
        argv += ["--fork", str(count), "--status-fd", str(write_fd)]
        argv += ["--command-fd", str(command_read)]
        argv += ["--log-dir", str(log_dir)] if log_dir is not None else []
        argv += ["--hold"] if hold else []
        # No JPY_PARENT_PID: engines watch their controller through the hub instead.
        env = {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"}
        try:
            self.process = KernelProcess(argv, env=env, pass_fds=(write_fd, command_read))
        except BaseException:
            os.close(read_fd)
            os.close(command_write)
            raise
        finally:
            os.close(write_fd)
            os.close(command_read)
        os.set_blocking(command_write, False)
        self.count = count
        self.hold = hold
        self.cluster_file = cluster_file
        self.log_dir = log_dir
        #: The server's reports (``started PID UUID``, ``exited PID CODE``), read end.
        self.status: int | None = read_fd
        #: Where ``go`` and ``fork UUID`` lines go, write end.
        self.commands: int | None = command_write

    def go(self) -> None:
        """The cluster file is written: fork. ``BrokenPipeError`` if the server is gone
        (it failed while importing)."""
        assert self.commands is not None
        os.write(self.commands, b"go\n")  # 3 bytes: an empty pipe takes them at once

    def discard(self) -> None:
        """End a server that will not be used (the controller stops before its launch):
        it has forked nothing, so it is killed at once and reaped."""
        for fd in (self.status, self.commands):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.status = self.commands = None
        self.process.kill()
        self.process.reap_blocking()
        self.process.close()
