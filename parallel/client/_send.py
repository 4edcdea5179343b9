"""Sends that never block in libzmq: a socket with no peer is an error within seconds.

With no send high-water mark (``_engine_link._socket``) a DEALER that has a connection
(a *pipe*) always queues. One without blocks a plain send forever: that is a DEALER
whose Curve handshake was refused, since libzmq drops the pipe then and does not
reconnect (measured: after the refusal ``ZMQ_EVENTS`` never shows ``POLLOUT`` again). A
client holding the wrong keys then hung in a send instead of being told (the kernel's
``MessageSocket.send`` had the same bug). So every send of the pool client is
``NOBLOCK``; on ``EAGAIN`` :func:`send_or_fail` waits for the socket to take it, up to
:data:`SEND_WAIT` seconds, and then raises :class:`Unreachable`, which each caller turns
into its own clear error ("cannot reach the controller at ...: authentication failed:
..."). The wait polls only that socket: whatever arrives on the others meanwhile stays
queued in libzmq (no receive high-water mark either) until the caller pumps again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import zmq

from kernel.transport._frames import send_frames

__all__ = ["SEND_WAIT", "Unreachable", "send_or_fail"]

#: How long a send waits for a socket with no connection to get one (seconds).
SEND_WAIT: Final = 5.0
#: How often the wait looks again (ms): a refusal reported meanwhile ends it early.
_RECHECK_MS: Final = 50


class Unreachable(Exception):
    """No connection took the message: :attr:`reason` says why, as far as known."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def send_or_fail(
    sock: zmq.Socket[Any],
    frames: Sequence[bytes | bytearray | memoryview],
    *,
    zero_copy: bool = False,
    wait: float = SEND_WAIT,
    refused: Callable[[], str | None] | None = None,
) -> None:
    """Send ``frames`` on ``sock`` without blocking in libzmq (module docstring).

    ``zero_copy``: large buffers go out as they are (``send_multipart(copy=False)``).
    ``refused()`` says why the peer refused us ("authentication failed: ..."), if it
    did: asked while waiting, it ends the wait at once. :class:`Unreachable` when the
    message could not be queued within ``wait`` seconds; nothing was sent then."""
    deadline: float | None = None
    while True:
        try:
            if zero_copy:
                sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            else:
                send_frames(sock, frames, wait=False)
            return
        except zmq.Again:
            pass
        now = time.monotonic()
        if deadline is None:
            deadline = now + wait
        why = refused() if refused is not None else None
        if why is not None:
            raise Unreachable(why)
        if now >= deadline:
            raise Unreachable(
                f"no connection took a message within {wait:g} s (its handshake was"
                " refused: are these the cluster's keys?)"
            )
        sock.poll(min(_RECHECK_MS, max(1, int((deadline - now) * 1000))), zmq.POLLOUT)
