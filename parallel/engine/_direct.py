"""The engine's direct shell: shell requests over a Unix stream socket, without libzmq.

Theory of operation
-------------------
A client on the engine's host reaches its shell through ZeroMQ's ipc transport, where
every message crosses libzmq's I/O thread at both ends: on 2 cores, with 16 engines,
those threads and their wake-ups were ~1.5 ms of CPU per broadcast of a trivial task, a
sixth of it all (docs/architecture.md, "The direct shell"). So an engine of an ipc cluster
also listens on a Unix stream socket, ``<its ipc prefix>-direct``, in the cluster's
owner-only directory: the same trust as its ipc sockets. A client that can connect sends
its shell requests there (``parallel/client/_direct_link.py``) and gets the replies back
on the same connection; iopub, control, stdin and the heartbeat stay on ZeroMQ, and a
Jupyter client attached to the engine uses its ipc shell as before.

Each connection's bytes are cut into messages (``parallel/protocol/_direct_frames.py``),
verified by the shell's own :class:`~kernel.protocol.Session` (signature and replays, as
on ZeroMQ) and put in the shell socket's inbox (``MessageSocket.deliver``) with the
identities ``[MARK, <connection id>]``; the server answers as it answers any request, and
``MessageSocket.send`` hands a reply with that first identity to :meth:`DirectShell.send`
(``MessageSocket.add_route``), which writes it to its connection without blocking: what
the client does not take yet waits in the connection's :class:`Outbox`, written whenever
the socket can take more. A connection from another user (``SO_PEERCRED``), or one whose
bytes break the framing, is closed, with a rate-limited log; invalid messages are dropped
as on ZeroMQ. ``LOOM_DIRECT=off`` turns it off (clients then use ZeroMQ).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import struct
from dataclasses import dataclass, field

from kernel.protocol import Message, ProtocolError, Received
from kernel.transport import RateLimitedLog
from kernel.transport._socket import MessageSocket

from ..protocol._direct_frames import SOCKET_BUFFER, FrameDecoder, FramingError, Outbox

__all__ = ["MARK", "DirectShell", "listen_direct"]

log = logging.getLogger("loom.parallel")

#: The first identity of a request that came over a direct connection.
MARK = b"\x00loom-direct"
#: Bytes read per ``recv`` (a task's request is a few hundred; larger ones take several).
_READ_SIZE = 1 << 18
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
#: Reads of ``_READ_SIZE`` per wake of the loop, at most (64 MiB).
_READS_PER_WAKE = 256
#: Seconds before accepting again after a failure (no descriptor left).
_ACCEPT_RETRY = 0.2


def listen_direct(path: str) -> socket.socket | None:
    """Listen at ``path`` (replacing a file left by an earlier engine of that name), before
    the engine registers: clients that learn of it may connect at once, and wait in the
    backlog until :class:`DirectShell` serves. None, with a log line, where it cannot
    (clients then use ZeroMQ)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(socket.SOMAXCONN)
    except OSError as exc:
        listener.close()
        log.warning("engine: no direct shell at %s (%s); clients use ZeroMQ", path, exc)
        return None
    listener.setblocking(False)
    return listener


def _peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end (Linux's ``SO_PEERCRED``); None where the
    system does not say (the directory's 0700 is then the only check, as for ipc)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    _, uid, _ = _CREDENTIALS.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _CREDENTIALS.size))
    return int(uid)


@dataclass(eq=False)
class _Connection:
    sock: socket.socket
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    outbox: Outbox = field(default_factory=Outbox)
    #: Whether the loop watches the socket for room to write (``outbox`` not empty).
    waiting: bool = False


class DirectShell:
    """The listener and its connections, on the shell's loop; see the module docstring."""

    def __init__(self, shell: MessageSocket, listener: socket.socket) -> None:
        self._shell = shell
        self._session = shell.session
        self._loop = asyncio.get_running_loop()
        self._listener = listener
        self._connections: dict[bytes, _Connection] = {}
        self._ids = itertools.count(1)
        self._rejected = RateLimitedLog(log)
        self._buffer = bytearray(_READ_SIZE)

    def start(self) -> None:
        """Serve: accept connections (those waiting first) and read them on the loop."""
        self._shell.add_route(MARK, self.send)
        self._loop.add_reader(self._listener.fileno(), self._accept)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of descriptors: the connection waits in the backlog (its client's
                # requests with it) until one is free; look again shortly, not in a spin
                # of the loop over a listener that stays readable.
                self._rejected.warning("engine: cannot accept a direct connection: %s", exc)
                fd = self._listener.fileno()
                self._loop.remove_reader(fd)
                self._loop.call_later(_ACCEPT_RETRY, self._loop.add_reader, fd, self._accept)
                return
            uid = _peer_uid(sock)
            if uid is not None and uid != os.getuid():
                self._rejected.warning("engine: refused a direct connection from uid %d", uid)
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            key = str(next(self._ids)).encode()
            self._connections[key] = _Connection(sock)
            self._loop.add_reader(sock.fileno(), self._readable, key)

    def _readable(self, key: bytes) -> None:
        connection = self._connections.get(key)
        if connection is None:
            return
        messages: list[list[bytes]] = []
        # Until the socket is drained (a large request in one wake of the loop, not one
        # per buffer's worth), or a bounded amount: other connections wait meanwhile.
        for _ in range(_READS_PER_WAKE):
            try:
                more, full = connection.decoder.read(connection.sock.recv_into, self._buffer)
            except (BlockingIOError, InterruptedError):
                break
            except (OSError, EOFError):  # the client closed (what it sent whole is served)
                self._close(key)
                break
            except FramingError as exc:
                self._rejected.warning("engine: closed a direct connection: %s", exc)
                self._close(key)
                return
            messages += more
            if not full:
                break
        identities = [MARK, key]
        for frames in messages:
            try:
                message = self._session.deserialize(frames).message
            except ProtocolError as exc:
                self._shell.rejected.warning("dropped invalid message on direct shell: %s", exc)
                continue
            self._shell.deliver(Received(identities, message))

    def send(self, message: Message, identities: list[bytes]) -> None:
        """Write a reply to the connection its request came on (``MessageSocket.add_route``);
        a reply for a connection gone is dropped, as ZeroMQ drops one for a peer gone."""
        connection = self._connections.get(identities[1]) if len(identities) > 1 else None
        if connection is None:
            return
        frames = self._session.serialize(message, copy_buffers=False)
        try:
            connection.outbox.write(frames, connection.sock.sendmsg)
        except OSError:  # the client is gone
            self._close(identities[1])
            return
        if connection.outbox and not connection.waiting:  # the rest when there is room
            connection.waiting = True
            self._loop.add_writer(connection.sock.fileno(), self._write, identities[1])

    def _write(self, key: bytes) -> None:
        connection = self._connections.get(key)
        if connection is None:
            return
        outbox = connection.outbox
        fd = connection.sock.fileno()
        try:
            while outbox:
                outbox.written(connection.sock.sendmsg(outbox.batch()))
        except (BlockingIOError, InterruptedError):
            if not connection.waiting:
                connection.waiting = True
                self._loop.add_writer(fd, self._write, key)
            return
        except OSError:  # the client is gone
            self._close(key)
            return
        if connection.waiting:
            connection.waiting = False
            self._loop.remove_writer(fd)

    def _close(self, key: bytes) -> None:
        connection = self._connections.pop(key, None)
        if connection is None:
            return
        fd = connection.sock.fileno()
        self._loop.remove_reader(fd)
        self._loop.remove_writer(fd)
        connection.sock.close()
