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
3. it reports on the status descriptor, one line each: ``started PID`` per child, then
   ``exited PID CODE`` as each is reaped (``CODE`` as ``subprocess`` gives it: negative
   for a signal). The launcher watches engines through these lines;
4. it exits once every child has been reaped. SIGTERM is passed on to the children.

Engines carry ``JPY_PARENT_PID`` (the controller), so they end with their controller
whatever happens to this process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

__all__ = ["fork_engines"]


def _preload() -> None:
    """Import what an engine and its first task import (no thread, no zmq context)."""
    import asyncio  # noqa: F401
    import sqlite3  # noqa: F401  # the interpreter's history

    import cloudpickle  # noqa: F401
    import zmq  # noqa: F401

    import kernel.server._app
    import kernel.server._server
    import kernel.server.interpreter._interpreter
    import kernel.transport._ports  # noqa: F401
    import parallel.engine._apply
    import parallel.protocol._serialize  # noqa: F401


def fork_engines(cluster_file: str, count: int, status_fd: int) -> int:
    """Run ``count`` engines of the cluster in ``cluster_file`` (module docstring)."""
    _preload()
    status = os.fdopen(status_fd, "w", buffering=1, encoding="ascii")
    children: set[int] = set()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # the engine
            status.close()
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            from ._engine import run_engine

            try:
                code = run_engine(cluster_file)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)  # run_engine returns only when the engine could not start
        children.add(pid)
        status.write(f"started {pid}\n")

    def forward(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:  # none left (reaped elsewhere): nothing to report
            break
        children.discard(pid)
        with contextlib.suppress(OSError):  # the launcher stopped listening
            status.write(f"exited {pid} {os.waitstatus_to_exitcode(wait_status)}\n")
    return 0
