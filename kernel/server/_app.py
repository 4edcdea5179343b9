"""``loom kernel``: bind the five sockets and serve until shut down.

Start-up is what clients wait for, and half of it is importing asyncio and the
server. So the sockets are bound and the I/O thread started first, with only
zmq and the protocol imported: it answers ``kernel_info_request`` on shell
while the main thread imports the rest, then hands shell over to the server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from kernel.protocol import ConnectionFileError, ConnectionInfo, Session
from kernel.protocol._freshness import replay_skew
from kernel.server.channels._control import flush_sent
from kernel.server.channels._heartbeat_echo import start_heartbeat
from kernel.server.channels._iothread import IOThread
from kernel.transport._limits import SocketLimitsError
from kernel.transport._ports import KernelSockets, open_kernel_sockets

if TYPE_CHECKING:
    from kernel.server.interpreter._interpreter import Interpreter

    from ._server import KernelServer

__all__ = ["end_process", "run_kernel", "serve", "start_io"]

log = logging.getLogger("loom.kernel")


def run_kernel(connection_file: str | None = None) -> int:
    """The ``python -m kernel`` process: serve until shut down, then end the process.

    With no file (or one that does not exist yet), bind free ports, write a fresh
    connection file and print where it is. Returns 2 for an unreadable connection file;
    an unreadable ``LOOM_*`` socket limit also returns 2, with the variable named;
    otherwise never returns: the process ends with ``os._exit`` once the last messages
    are flushed, so threads user code left running cannot keep a shut-down kernel alive.
    Library users (the parallel engine) compose :func:`open_kernel_sockets`,
    :func:`start_io` and :func:`serve` instead.
    """
    configure_loom_log("kernel")
    started = time.time()  # messages dated much earlier are replays from before a restart
    try:
        skew = replay_skew()
    except ValueError as exc:
        print(f"loom kernel: {exc}", file=sys.stderr)
        return 2
    if connection_file and Path(connection_file).exists():
        try:
            info = ConnectionInfo.read(connection_file)
        except ConnectionFileError as exc:
            print(f"loom kernel: {exc}", file=sys.stderr)
            return 2
    else:
        info = ConnectionInfo(key=ConnectionInfo.new_key(), kernel_name="loom")
    try:
        sockets = open_kernel_sockets(info)
    except SocketLimitsError as exc:  # a LOOM_* limit that is not a size or count
        print(f"loom kernel: {exc}", file=sys.stderr)
        return 2
    warn_if_plaintext(sockets.info)
    owned: Path | None = None  # a connection file this process wrote, and so removes
    if sockets.info != info:  # ports were chosen while binding: announce them
        from ._standalone import remove_file_on_signals, stop_hint

        owned = sockets.info.write(connection_file)
        remove_file_on_signals(owned)
        hint = stop_hint()
        print(
            f"Loom kernel started. To connect another client to this kernel, use:\n"
            f"    loom --existing {owned}" + (f"\n{hint}" if hint else ""),
            flush=True,
        )
    iothread = start_io(sockets, not_before=started - skew)  # answers kernel_info from here on
    import asyncio  # only now: see the module docstring

    code = asyncio.run(serve(sockets, iothread))
    if owned is not None:
        owned.unlink(missing_ok=True)
    end_process(sockets, code)


def plaintext_warning(info: ConnectionInfo) -> str | None:
    """The one-line warning a kernel serving ``info`` prints, or None on ``ipc`` or Curve.

    As ipykernel's: the key signs messages, it does not encrypt them, so over TCP code
    and outputs are plain text on the wire; and any process that reaches the ports can
    connect (unsigned messages are dropped, but receiving them costs the kernel).
    """
    if info.transport != "tcp" or info.curve is not None:
        return None  # ipc: file permissions guard the sockets; Curve: encrypted
    return (
        f"loom kernel: WARNING: serving plain TCP on {info.ip}: code and outputs travel "
        "unencrypted and anyone who can reach these ports can connect; to avoid it use "
        'the ipc transport ("transport": "ipc" in the connection file) or CurveZMQ '
        "(Curve keys in the connection file, as jupyter_client's "
        'transport_encryption="required" writes them)'
    )


def warn_if_plaintext(info: ConnectionInfo) -> None:
    """Print :func:`plaintext_warning` on stderr: once, as the kernel starts."""
    warning = plaintext_warning(info)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)


def end_process(sockets: KernelSockets, code: int) -> NoReturn:
    """End a served kernel process: close ``sockets``, deliver what is queued, exit ``code``.

    ``os._exit``: threads user code left running cannot keep a shut-down kernel alive, and
    atexit handlers of user code cannot block it.
    """
    # Not the heartbeat: zmq.proxy still runs on it in loom-heartbeat, and closing a socket
    # under it fails there (ENOTSOCK); terminating the context ends the proxy instead.
    for channel in ("shell", "stdin", "iopub", "control"):
        sockets[channel].close(linger=200)
    flush_sent(sockets["iopub"].context)
    os._exit(code)


def start_io(
    sockets: KernelSockets, *, not_before: float | None = None, instance: str | None = None
) -> IOThread:
    """Start the heartbeat echo and the I/O thread on bound ``sockets``.

    ``not_before`` (epoch seconds): signed messages dated earlier are refused as replays
    from before a restart (``kernel/protocol/_freshness.py``); None: no date check.
    ``instance``: this process's instance id (an engine's): a request naming another is
    refused, one naming it is taken whatever its date (``_freshness.refusal``).

    From this call on, the kernel answers ``kernel_info`` on shell and captures fds 1
    and 2, before asyncio and the server are imported (the module docstring says why).
    """
    info = sockets.info
    session = Session(info.key, info.signature_scheme)
    session.not_before = not_before  # before fork(): every channel's session checks it
    session.instance = instance
    start_heartbeat(sockets["hb"])
    iothread = IOThread(
        session,
        sockets["iopub"],
        sockets["control"],
        control_session=session.fork(),
        shell=sockets["shell"],
        shell_session=session.fork(),
        zap=sockets.zap,
    )
    _log_to_original_stderr(iothread)  # before the thread logs a rejected message
    iothread.start()
    return iothread


async def serve(
    sockets: KernelSockets,
    iothread: IOThread,
    *,
    setup: Callable[[KernelServer], None] | None = None,
    keep_history: bool = True,
) -> int:
    """Serve shell requests until a shutdown request; return the exit status (0).

    ``keep_history`` False keeps the cells' history (``In``, ``%history``,
    ``history_request``) in memory instead of the user's shared history file: an
    engine's cells are not what the user typed at a prompt.

    ``setup`` is called with the server before it serves: the parallel engine adds its
    ``apply_request`` handler there (composition, not subclassing). The process-wide
    effects of a kernel are installed here for the duration and undone before this
    returns (see :func:`_process_effects`); the sockets stay open for the caller.
    """
    # The server's imports, here so that the I/O thread runs before them.
    from kernel.transport._socket import MessageSocket

    from ._server import KernelServer

    def make_interpreter() -> Interpreter:
        # Imported here: the interpreter (magics, display, history) is built after
        # the first kernel_info reply, keeping it off the start-up path.
        from kernel.server.interpreter._history_store import HistoryStore, default_history_path
        from kernel.server.interpreter._interpreter import Interpreter

        return Interpreter(
            lambda msg_type, content: server.publish(msg_type, content, server.current),
            history=HistoryStore(default_history_path() if keep_history else None),
        )

    shell = MessageSocket(sockets["shell"], iothread.shell_session, "shell")
    server = KernelServer(
        iothread.session, shell, sockets["stdin"], iothread, make_interpreter=make_interpreter
    )
    if setup is not None:
        setup(server)
    with _process_effects(iothread):
        shell.requeue(iothread.hand_over(on_parent_exit=server.stop_from_thread))
        try:
            await server.serve()
        finally:
            iothread.stop()
    return 0


@contextlib.contextmanager
def _process_effects(iothread: IOThread) -> Iterator[None]:
    """Every process-wide change a serving kernel makes, and its undoing, in one place.

    - ``sys.stdout``/``sys.stderr`` become streams that publish on iopub (fds 1 and 2
      were already redirected into the I/O thread's pipes by :func:`start_io`; they are
      put back here too);
    - SIGINT is ignored until the interpreter exists, then the interpreter's handler
      turns it into ``KeyboardInterrupt`` while user code runs;
    - per cell, ``input()``/``getpass()`` are swapped by ``StdinBridge.installed``,
      which undoes that itself when the cell ends;
    - the working directory joins ``sys.path`` for user code, without shadowing Loom's
      own packages (:mod:`kernel.server._import_path`: Loom runs ``python -P``).
    """
    from kernel.server.channels._streams import OutStream

    from ._import_path import user_import_path

    # A Python no-op rather than SIG_IGN: ignored dispositions survive exec() into the
    # children user code starts (``!cmd``), a Python handler does not.
    previous_sigint = signal.signal(signal.SIGINT, _ignore_signal)
    sys.stdout = OutStream(iothread, "stdout", 1)
    sys.stderr = OutStream(iothread, "stderr", 2)
    try:
        with user_import_path():
            yield
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        iothread.restore_fds()
        signal.signal(signal.SIGINT, previous_sigint)


def _ignore_signal(signum: int, frame: object) -> None:
    """SIGINT before the interpreter exists: no user code runs, so nothing to interrupt."""


def configure_loom_log(label: str) -> None:
    """The process's own ``loom.*`` loggers write to stderr as ``[loom LABEL]``; the root
    logger stays the user's (an engine uses it too: refused replays stay out of task output).

    A cell's ``logging.warning()`` then reaches the cell's output (through
    ``logging.lastResort`` and ``sys.stderr``), as in IPython, not the kernel's log.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"[loom {label}] %(levelname)s %(message)s"))
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
