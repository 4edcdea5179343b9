"""``loom kernel``: bind the five sockets and serve until shut down.

Start-up is what clients wait for, and half of it is importing asyncio and the
server. So the sockets are bound and the I/O thread started first, with only
zmq and the protocol imported: it answers ``kernel_info_request`` on shell
while the main thread imports the rest, then hands shell over to the server.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

if TYPE_CHECKING:
    from kernel.server.interpreter._interpreter import Interpreter

from kernel.protocol import ConnectionFileError, ConnectionInfo, Session
from kernel.server.channels._control import flush_sent
from kernel.server.channels._heartbeat_echo import start_heartbeat
from kernel.server.channels._iothread import IOThread

__all__ = ["run_kernel"]

log = logging.getLogger("loom.kernel")

# Enough buffered iopub messages that a client reading slowly through an
# output flood loses nothing (stream text is batched into large messages).
IOPUB_SNDHWM = 100_000


def _bind(sock: zmq.Socket[bytes], info: ConnectionInfo, channel: str) -> int:
    port = info.port(channel)
    if info.transport == "ipc":
        sock.bind(info.url(channel))
        return port
    host = f"tcp://[{info.ip}]" if ":" in info.ip else f"tcp://{info.ip}"
    if ":" in info.ip:
        sock.ipv6 = True
    if port:
        sock.bind(f"{host}:{port}")
        return port
    # No port given: let the OS choose while binding, so there is no window in
    # which another process can take the port (ipykernel's race).
    return sock.bind_to_random_port(host)


def run_kernel(connection_file: str | None = None) -> int:
    """Run a kernel; with no file, write a fresh one and print where it is."""
    _configure_log()
    if connection_file and Path(connection_file).exists():
        try:
            info = ConnectionInfo.read(connection_file)
        except ConnectionFileError as exc:
            print(f"loom kernel: {exc}", file=sys.stderr)
            return 2
    else:
        info = ConnectionInfo(key=ConnectionInfo.new_key(), kernel_name="loom")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sockets: dict[str, zmq.Socket[bytes]] = {
        "shell": zmq.Socket(ctx, zmq.ROUTER),
        "control": zmq.Socket(ctx, zmq.ROUTER),
        "stdin": zmq.Socket(ctx, zmq.ROUTER),
        "iopub": zmq.Socket(ctx, zmq.XPUB),
        "hb": zmq.Socket(ctx, zmq.ROUTER),
    }
    sockets["iopub"].setsockopt(zmq.XPUB_VERBOSE, 1)
    sockets["iopub"].sndhwm = IOPUB_SNDHWM
    for name, sock in sockets.items():
        sock.linger = 1000
        if name != "iopub":
            # ROUTER drops replies that exceed the high-water mark; replies are
            # small and bounded by what clients asked, so never drop them.
            sock.sndhwm = 0
            sock.rcvhwm = 0
    ports = {f"{ch}_port": _bind(sock, info, ch) for ch, sock in sockets.items()}
    if not all(info.port(ch) for ch in sockets):
        info = ConnectionInfo(
            ip=info.ip,
            transport=info.transport,
            key=info.key,
            signature_scheme=info.signature_scheme,
            kernel_name=info.kernel_name or "loom",
            **ports,
        )
        path = info.write(connection_file)
        print(
            f"Loom kernel started. To connect another client to this kernel, use:\n"
            f"    loom --existing {path}",
            flush=True,
        )
    session = Session(info.key, info.signature_scheme)
    start_heartbeat(sockets["hb"])
    iothread = IOThread(
        session,
        sockets["iopub"],
        sockets["control"],
        control_session=session.fork(),
        shell=sockets["shell"],
        shell_session=session.fork(),
    )
    _log_to_original_stderr(iothread)  # before the thread logs a rejected message
    iothread.start()  # answers kernel_info from here on
    import asyncio  # only now: see the module docstring

    return asyncio.run(_serve(sockets, iothread))


async def _serve(sockets: dict[str, zmq.Socket[bytes]], iothread: IOThread) -> int:
    # The server's imports, here so that the I/O thread runs before them.
    import asyncio

    from kernel.server.channels._streams import OutStream
    from kernel.transport._socket import MessageSocket

    from ._server import KernelServer

    session = iothread.session

    def make_interpreter() -> Interpreter:
        # Imported here: the interpreter (magics, display, history) is built after
        # the first kernel_info reply, keeping it off the start-up path.
        from kernel.server.interpreter._history_store import HistoryStore, default_history_path
        from kernel.server.interpreter._interpreter import Interpreter

        return Interpreter(
            lambda msg_type, content: server.publish(msg_type, content, server.current),
            history=HistoryStore(default_history_path()),
        )

    shell = MessageSocket(sockets["shell"], iothread.shell_session, "shell")
    server = KernelServer(
        session, shell, sockets["stdin"], iothread, make_interpreter=make_interpreter
    )
    server.bind_loop(asyncio.get_running_loop())
    sys.stdout = OutStream(iothread, "stdout", 1)
    sys.stderr = OutStream(iothread, "stderr", 2)
    shell.requeue(iothread.hand_over(on_parent_exit=server.stop_from_thread))
    try:
        await server.serve()
    finally:
        iothread.stop()
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        for name in ("shell", "stdin", "iopub", "control"):
            sockets[name].close(linger=200)
        flush_sent(sockets["iopub"].context)
    os._exit(0)


def _configure_log() -> None:
    """The kernel's own ``loom.*`` loggers write to stderr; the root logger stays the user's.

    A cell's ``logging.warning()`` then reaches the cell's output (through
    ``logging.lastResort`` and ``sys.stderr``), as in IPython, not the kernel's log.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[loom kernel] %(levelname)s %(message)s"))
    loom = logging.getLogger("loom")
    loom.addHandler(handler)
    loom.setLevel(logging.WARNING)
    loom.propagate = False


def _log_to_original_stderr(iothread: IOThread) -> None:
    """Keep the kernel's own log out of cell output.

    fd 2 is now the capture pipe, whose text reaches clients as ``stream``
    output of whatever request is current; the log handler (which writes to
    fd 2) must write to the real stderr instead, which the I/O thread kept.
    """
    fd = iothread.original_fds.get("stderr")
    if fd is None:
        return
    stream = open(fd, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    for handler in logging.getLogger("loom").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)
