"""Multipart sends and input checks without pyzmq's per-frame Python layer.

pyzmq's ``send_multipart`` calls its Python ``send`` once per frame, computing
``SNDMORE | flags`` as ``enum.IntFlag`` arithmetic each time, and ``ZMQ_EVENTS & POLLIN``
written with pyzmq's constants is ``IntFlag`` arithmetic too. On a message of seven
small frames that was about two thirds of the send's cost (measured: 28 us for
``send_multipart`` against 10 us here, pyzmq 27.3). These helpers call the Cython
backend's ``send``/``get`` with plain ints: the same libzmq calls, the same EINTR retry
(done in the backend). Frames sent here are always copied into libzmq (``copy=True``);
zero-copy sends of large buffers keep using ``send_multipart(copy=False)``.
:func:`recv_frames` receives large buffer frames without a copy.
``tests/transport/test_frames.py`` checks these against pyzmq's own, so an upgrade that
changes the backend is caught.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zmq
from zmq.backend import Socket as _BackendSocket

__all__ = ["ZERO_COPY_MIN", "has_input", "has_large_buffer", "recv_frames", "send_frames"]

#: A buffer frame at least this large is received without a copy (a memoryview of
#: libzmq's message); smaller ones are copied into ``bytes``, which is cheaper for them.
ZERO_COPY_MIN = 1 << 16
#: Frames after the delimiter that are never buffers: the signature and 4 JSON frames.
_SIGNED_FRAMES = 5
_DELIMITER = b"<IDS|MSG>"

_SNDMORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_send = _BackendSocket.send
_recv = _BackendSocket.recv
_get = _BackendSocket.get


def has_large_buffer(buffers: Sequence[bytes | bytearray | memoryview]) -> bool:
    """Whether any buffer is worth a zero-copy send (:data:`ZERO_COPY_MIN` or more): below
    that, pyzmq copies anyway, and its ``send_multipart(copy=False)`` only costs more."""
    for buffer in buffers:  # a loop, not any(generator): most messages have one small buffer
        size = len(buffer) if type(buffer) is bytes else memoryview(buffer).nbytes
        if size >= ZERO_COPY_MIN:
            return True
    return False


def send_frames(
    sock: zmq.Socket[Any], frames: Sequence[bytes | bytearray | memoryview], *, wait: bool = True
) -> None:
    """``sock.send_multipart(frames)`` (copying, blocking as the socket's options say).

    ``wait=False``: raise ``zmq.Again`` instead of blocking when the message cannot be
    queued now (nothing was sent then: libzmq accepts the rest of a message whose first
    frame it took)."""
    # The first frame alone decides whether the message is taken; the middle ones need no
    # index arithmetic (a Jupyter message has 7 to 9 frames).
    last = len(frames) - 1
    if last <= 0:
        if frames:
            _send(sock, frames[0], 0 if wait else _NOBLOCK)
        return
    _send(sock, frames[0], _SNDMORE if wait else _SNDMORE | _NOBLOCK)
    for index in range(1, last):
        _send(sock, frames[index], _SNDMORE)
    _send(sock, frames[last], 0)


def has_input(sock: zmq.Socket[Any]) -> bool:
    """Whether a message can be read from ``sock`` now (``ZMQ_EVENTS & POLLIN``)."""
    events = _get(sock, _EVENTS)
    return isinstance(events, int) and bool(events & _POLLIN)  # ZMQ_EVENTS is an int


def recv_frames(sock: zmq.Socket[Any]) -> list[bytes]:
    """The next multipart message on ``sock`` without blocking (``zmq.Again`` if none).

    A Jupyter message's buffers (frames after the delimiter, the signature and the 4
    JSON frames) of at least :data:`ZERO_COPY_MIN` bytes come as read-only memoryviews
    of libzmq's messages, not copied: a 100 MB array pushed to an engine is copied once
    fewer. Every other frame is ``bytes``.

    Each frame is received as a ``zmq.Frame`` and asked ``more`` (libzmq's
    ``zmq_msg_more``, no call into the socket): a ``ZMQ_RCVMORE`` ``get`` after each
    frame cost more than the frame's ``bytes`` copy (measured: 8 frames 20 -> 13 us).
    """
    part = _recv(sock, _NOBLOCK, False)
    frame: bytes = part.bytes
    frames = [frame]
    signed_left = _SIGNED_FRAMES if frame == _DELIMITER else -1
    while part.more:
        part = _recv(sock, 0, False)
        if signed_left == 0:  # a buffer
            # A memoryview is a bytes-like frame, as in Session.serialize(copy_buffers=False).
            # Read-only, as bytes would be: over inproc the view could be the sender's memory.
            frame_view = part.buffer.toreadonly() if len(part) >= ZERO_COPY_MIN else part.bytes
            frames.append(frame_view)  # type: ignore[arg-type]
            continue
        frame = part.bytes
        frames.append(frame)
        if signed_left > 0:
            signed_left -= 1
        elif frame == _DELIMITER:
            signed_left = _SIGNED_FRAMES
    return frames
