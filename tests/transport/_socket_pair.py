"""Two connected ``MessageSocket`` ends over inproc, for the transport's unit tests."""

from __future__ import annotations

import zmq

from kernel.protocol import Session
from kernel.transport._socket import MessageSocket


def message_socket_pair(
    ctx: zmq.Context[zmq.Socket[bytes]], name: str
) -> tuple[MessageSocket, MessageSocket]:
    """PAIR sockets at ``inproc://name`` without high-water marks, as ``MessageSocket``
    needs them, wrapped with one key (the second end's session forked)."""
    session = Session(b"key")
    sockets = []
    for _ in range(2):
        sock: zmq.Socket[bytes] = ctx.socket(zmq.PAIR)
        sock.linger, sock.sndhwm, sock.rcvhwm = 0, 0, 0
        sockets.append(sock)
    sockets[0].bind(f"inproc://{name}")
    sockets[1].connect(f"inproc://{name}")
    return MessageSocket(sockets[0], session, "a"), MessageSocket(sockets[1], session.fork(), "b")
