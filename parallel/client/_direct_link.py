"""The client's end of an engine's direct shell (``parallel/engine/_direct.py``).

A non-blocking Unix stream socket to an engine on this host: :meth:`DirectLink.send`
writes a request's frames (framed by ``parallel/protocol/_direct_frames.py``) as far as
the socket takes them and keeps the rest in an :class:`Outbox`, which :meth:`flush`
writes as the client's pump finds room (``Pump.add_stream``): a send never blocks, as a
ZeroMQ send with no high-water mark never does. :meth:`read` returns the replies
completed by what is waiting. Both raise :class:`DirectClosed` once the engine is gone
(end of stream, a reset) or broke the framing; the engine link then falls back to ZeroMQ
(``_engine_link``), and the engine's heartbeat tells whether it lives.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping, Sequence

from ..protocol._direct_frames import (
    SOCKET_BUFFER,
    FrameDecoder,
    FramingError,
    Outbox,
    direct_enabled,
)

__all__ = ["DirectClosed", "DirectLink", "connect_direct"]

#: How long connecting may take (seconds): the engine accepts on its loop, between tasks;
#: a backlog that full means a busy engine, and ZeroMQ serves as well then.
CONNECT_TIMEOUT = 1.0
_READ_SIZE = 1 << 18


class DirectClosed(Exception):
    """The direct connection is gone: why, in a few words."""


class DirectLink:
    """One connected stream; see the module docstring."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._decoder = FrameDecoder()
        self.outbox = Outbox()
        self._buffer = bytearray(_READ_SIZE)
        #: Why the stream ended, once it did after a read that still returned messages.
        self._ended: str | None = None

    def fileno(self) -> int:
        return self._fd

    def send(self, frames: Sequence[bytes | bytearray | memoryview]) -> None:
        """Queue one message's frames and write what the socket takes now."""
        try:
            self.outbox.write(frames, self._sock.sendmsg)
        except OSError as exc:
            raise DirectClosed(f"the engine's direct shell is gone ({exc.strerror})") from None

    def flush(self) -> None:
        """Write queued bytes until done or the socket is full."""
        outbox = self.outbox
        try:
            while outbox:
                outbox.written(self._sock.sendmsg(outbox.batch()))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            raise DirectClosed(f"the engine's direct shell is gone ({exc.strerror})") from None

    def read(self) -> list[list[bytes]]:
        """Every message completed by what is waiting now (none if nothing is). The
        replies read before the stream's end are returned first; the next call raises."""
        if self._ended is not None:
            raise DirectClosed(self._ended)
        messages: list[list[bytes]] = []
        while True:
            try:
                more, full = self._decoder.read(self._sock.recv_into, self._buffer)
            except (BlockingIOError, InterruptedError):
                return messages
            except (OSError, EOFError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else None
                self._ended = (
                    f"the engine's direct shell failed ({why})"
                    if why
                    else "the engine closed its direct shell"
                )
                if messages:
                    return messages
                raise DirectClosed(self._ended) from None
            except FramingError as exc:
                raise DirectClosed(f"the engine's direct shell broke its framing: {exc}") from None
            messages += more
            if not full:  # the socket is drained
                return messages

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def connect_direct(path: str, env: Mapping[str, str] = os.environ) -> DirectLink | None:
    """A link to the engine listening at ``path``, or None (none listens there, it is off,
    or ``LOOM_DIRECT`` is off here): the client then uses the engine's ZeroMQ shell."""
    if not direct_enabled(env):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        sock.setblocking(False)
    except OSError:
        sock.close()
        return None
    return DirectLink(sock)
