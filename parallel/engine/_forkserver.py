"""Start several engines from one process that has imported what they need, by ``fork``.

Theory of operation
-------------------
Every engine imports the same ~0.2 s of CPU of modules (asyncio, pyzmq, the kernel
server, the interpreter, cloudpickle). Four engines on a 2-core machine paid that four
times over, which alone kept "start -> 4 engines usable" above half a second. So the
``local`` launcher starts one process, this one (``python -P -m parallel.engine --fork N``):

1. it imports everything an engine and its first task import, and nothing else: no
   thread is started and no ZeroMQ context is made, so the process is safe to fork;
2. it forks ``N`` children; each starts a session of its own (its own process group, as
   a launched engine had) and runs :func:`~._engine.run_engine` as ``python -m
   parallel.engine`` would, sharing the parent's imported modules copy-on-write;
3. it reports on the status descriptor, one line each: ``started PID UUID`` per child,
   then ``exited PID CODE`` as each is reaped (``CODE`` as ``subprocess`` gives it:
   negative for a signal). The launcher watches engines through these lines;
4. with ``--command-fd``, it reads ``fork UUID`` lines there and forks one more engine
   with that uuid: the replacement of a dead engine, which registers with the uuid of the
   engine it replaces and so gets its id back (``EngineRegistry``). It waits on the
   command pipe and on one pidfd per child (``select``: no polling, no SIGCHLD race);
5. it exits once every child has been reaped and the command pipe (if any) is closed,
   with status 0, or, if every engine it forked failed (none ended with status 0 or by
   a signal that stops it: SIGTERM, SIGINT, SIGHUP), with the last failure's status
   (a signal as 128 + its number, as a shell says it). A one-node Slurm job is this
   process: its engines all failing must make the job FAILED, not COMPLETED, so that
   the launcher reports it with what they printed. SIGTERM is passed on to the children.

With ``--hold`` it preloads and then waits for a ``go`` line on the command pipe before
it forks: the ``local`` launcher starts it before its controller has imported, bound and
written the cluster file (whose path it is given), so the ~0.25 s of imports here run
while the controller does that, on the other core, instead of after it. A command pipe
closed before ``go`` (the controller could not start) ends it with status 0, having
forked nothing.

With ``--log-dir``, each engine's stderr goes to ``DIR/engine-UUID.log`` (truncated
at each fork), so the launcher can quote the last lines of the engine that died rather
than the interleaved output of all of them.

Engines outlive this process and their controller for a grace period (their hub link
watches the controller), so that a controller restarted with ``--restore`` finds them.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from typing import BinaryIO, TextIO

__all__ = ["fork_engines", "preload"]


def preload() -> None:
    """Import what an engine and its first task import (no thread, no zmq context).

    Also what an MPI rank imports while ``MPI_Init`` runs (``_node_engine``), so that its
    first task, like a forked engine's, imports nothing."""
    import asyncio  # noqa: F401
    import sqlite3  # noqa: F401  # the interpreter's history
    import tempfile  # noqa: F401  # the engine's connection file

    import cloudpickle  # noqa: F401
    import zmq  # noqa: F401

    import kernel.server._app
    import kernel.server._comm_package  # serve() installs its import hook
    import kernel.server._import_path  # a task's imports
    import kernel.server._server
    import kernel.server.interpreter._interpreter
    import kernel.transport._ports  # noqa: F401
    import parallel.engine._apply
    import parallel.engine._engine  # run_engine (python -m parallel.engine imports it late)
    import parallel.protocol._serialize  # noqa: F401


def fork_engines(
    cluster_file: str,
    count: int,
    status_fd: int,
    *,
    command_fd: int | None = None,
    log_dir: str | None = None,
    bind: str | None = None,
    hold: bool = False,
) -> int:
    """Run ``count`` engines of the cluster in ``cluster_file`` (module docstring);
    ``bind``: the address they bind (``run_engine``), for a node other than the
    controller's (``parallel.launchers._node_engine --fork``). ``hold``: fork only once
    ``go`` comes on ``command_fd`` (the file exists then)."""
    import select
    import uuid as uuidlib

    if hold and command_fd is None:
        raise ValueError("a fork server that holds needs a command pipe")

    # Start-up allocates much and frees little: collecting meanwhile cost ~6% of the
    # imports' CPU. Then what they made is frozen (``gc.freeze``): later collections in
    # the engines skip it, and do not write to the pages the children share with this
    # process (copy-on-write).
    gc.disable()
    preload()
    gc.freeze()
    gc.enable()
    status = os.fdopen(status_fd, "w", buffering=1, encoding="ascii")
    #: pid -> pidfd, for every child not yet reaped.
    children: dict[int, int] = {}
    ended = Endings()
    commands = os.fdopen(command_fd, "rb", buffering=0) if command_fd is not None else None
    pending = b""
    if hold:
        assert commands is not None
        after = _await_go(commands)
        if after is None:  # the controller could not start: nothing to fork
            commands.close()
            return 0
        pending = after

    def report(line: str) -> None:
        with contextlib.suppress(OSError):  # the launcher stopped listening
            status.write(line)

    def spawn(engine_uuid: str) -> None:
        pid = os.fork()
        if pid == 0:  # the engine
            _become_engine(cluster_file, engine_uuid, log_dir, status, command_fd, children, bind)
        children[pid] = os.pidfd_open(pid)
        report(f"started {pid} {engine_uuid}\n")

    def take(chunk: bytes) -> None:
        nonlocal pending
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            match line.split():
                case [b"fork", engine_uuid]:
                    spawn(engine_uuid.decode("ascii", "replace"))

    for _ in range(count):
        spawn(str(uuidlib.uuid4()))
    take(b"")  # lines that came with ``go``

    def forward(signum: int, frame: object) -> None:
        for child in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    while children or commands is not None:
        watched: list[int] = list(children.values())
        if commands is not None:
            watched.append(commands.fileno())
        ready = set(select.select(watched, [], [])[0])
        for pid, pidfd in list(children.items()):
            if pidfd in ready:
                _, wait_status = os.waitpid(pid, 0)
                os.close(children.pop(pid))
                code = os.waitstatus_to_exitcode(wait_status)
                ended.add(code)
                report(f"exited {pid} {code}\n")
        if commands is not None and commands.fileno() in ready:
            chunk = commands.read(4096)
            if not chunk:  # the launcher is stopping (or gone): no more replacements
                commands.close()
                commands = None
                continue
            take(chunk)
    return ended.status()


def _await_go(commands: BinaryIO) -> bytes | None:
    """Read ``commands`` up to a ``go`` line; what came after it, or None at the end of
    the pipe. Lines before it are dropped: nothing is forked before the file exists."""
    pending = b""
    while chunk := commands.read(4096):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip() == b"go":
                return pending
    return None


#: Signals that stop an engine on purpose (a launcher's stop, scancel, Ctrl-C): no failure.
STOPPED_BY = frozenset({-signal.SIGTERM, -signal.SIGINT, -signal.SIGHUP})


class Endings:
    """How the forked engines ended, and the fork server's exit status from that (pure)."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed: int | None = None  # the last failure's exit status (subprocess style)

    def add(self, code: int) -> None:
        """One engine ended with ``code`` (negative: killed by that signal)."""
        if code == 0 or code in STOPPED_BY:
            self.ok += 1
        else:
            self.failed = code

    def status(self) -> int:
        """0, unless engines failed and none ended well: then the last failure's status."""
        if self.failed is None or self.ok:
            return 0
        return self.failed if self.failed > 0 else 128 - self.failed


def _become_engine(
    cluster_file: str,
    engine_uuid: str,
    log_dir: str | None,
    status: TextIO,
    command_fd: int | None,
    children: dict[int, int],
    bind: str | None = None,
) -> None:
    """In the forked child: drop the server's descriptors, run the engine, never return."""
    status.close()
    for fd in [*children.values(), *([] if command_fd is None else [command_fd])]:
        with contextlib.suppress(OSError):
            os.close(fd)
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if log_dir is not None:
        with contextlib.suppress(OSError):
            path = os.path.join(log_dir, f"engine-{engine_uuid}.log")
            log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(log, 2)
            # A crash in C (SIGSEGV, SIGBUS, SIGABRT...) writes its Python traceback here,
            # on a descriptor of its own: fd 2 may be a task's output capture by then.
            import faulthandler

            faulthandler.enable(os.fdopen(log, "w"))
    from ._engine import run_engine

    code = 1
    try:
        code = run_engine(cluster_file, engine_uuid=engine_uuid, bind=bind)
    except BaseException:  # said on stderr (the engine's log): the launcher quotes it
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # run_engine returns only when the engine could not start
