"""The ZeroMQ seam: the only module of the client side that imports zmq.

:class:`MessageSocket` joins an asyncio ZeroMQ socket to a protocol
:class:`~kernel.protocol.Session`: ``send`` serializes and signs, ``recv``
returns the next *valid* message. Invalid input is logged (rate-limited) and
dropped, so a peer sending garbage can neither crash a reader nor flood a log.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq
import zmq.asyncio

from .protocol import Message, ProtocolError, Received, Session

__all__ = ["MessageSocket", "RateLimitedLog", "shared_context"]

log = logging.getLogger("loom.transport")


def shared_context() -> zmq.asyncio.Context:
    """The process-wide asyncio ZeroMQ context (one context, one set of libzmq I/O threads)."""
    return zmq.asyncio.Context.instance()


class RateLimitedLog:
    """Logs at most ``burst`` warnings per ``interval`` seconds, then one summary.

    ipykernel logs a full traceback per forged message; a flood of them must
    not turn into megabytes of log.
    """

    def __init__(self, logger: logging.Logger, *, burst: int = 5, interval: float = 10.0) -> None:
        self._logger = logger
        self._burst = burst
        self._interval = interval
        self._window_start = 0.0
        self._count = 0
        self._suppressed = 0

    def warning(self, fmt: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._window_start >= self._interval:
            if self._suppressed:
                self._logger.warning("suppressed %d similar messages", self._suppressed)
            self._window_start, self._count, self._suppressed = now, 0, 0
        if self._count < self._burst:
            self._count += 1
            self._logger.warning(fmt, *args)
        else:
            self._suppressed += 1


class MessageSocket:
    """A ZeroMQ socket that speaks Jupyter messages."""

    def __init__(self, socket: zmq.asyncio.Socket, session: Session, channel: str) -> None:
        self.socket = socket
        self.session = session
        self.channel = channel
        self._rejected = RateLimitedLog(log)

    @classmethod
    def connect(
        cls,
        socket_type: int,
        url: str,
        session: Session,
        channel: str,
        *,
        identity: bytes | None = None,
        context: zmq.asyncio.Context | None = None,
    ) -> MessageSocket:
        sock = (context or shared_context()).socket(socket_type)
        sock.linger = 0
        # No high-water marks on the client side: a PUB or ROUTER peer silently
        # drops what does not fit, and a lost reply or idle hangs a request.
        # Everything queued here answers requests this client chose to send.
        sock.rcvhwm = 0
        sock.sndhwm = 0
        if identity is not None:
            sock.identity = identity
        if socket_type == zmq.SUB:
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(url)
        return cls(sock, session, channel)

    async def send(self, message: Message, identities: list[bytes] | None = None) -> None:
        await self.socket.send_multipart(self.session.serialize(message, identities or ()))

    async def recv(self) -> Received:
        """The next valid message; invalid ones are logged and skipped."""
        while True:
            frames = await self.socket.recv_multipart()
            try:
                return self.session.deserialize(frames)
            except ProtocolError as exc:
                self._rejected.warning("dropped invalid message on %s: %s", self.channel, exc)

    def close(self) -> None:
        self.socket.close(linger=0)
