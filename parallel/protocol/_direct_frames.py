"""Multipart messages over a byte stream: the framing of the direct shell (pure, no I/O).

A client and an engine on one host talk shell over a Unix stream socket rather than
ZeroMQ when they can (``parallel/engine/_direct.py``, ``parallel/client/_direct_link.py``;
docs/architecture.md, "The direct shell"). A stream has no message boundaries, so each
message (the frames of a Jupyter message, as ``Session.serialize`` makes them) is
prefixed by its frame count and each frame's length:

    u32 count | count x u64 length | frame 0 | frame 1 | ...

little-endian. :func:`encode` returns the prefix and the frames as a list of buffers for
one ``sendmsg`` (no frame is copied); :class:`FrameDecoder` takes bytes as they arrive
and returns every message completed by them. A count of 0 or above :data:`MAX_FRAMES`
is a :class:`FramingError`: the stream is out of step (or not ours) and is closed, since
nothing after it can be trusted to start a message.
"""

from __future__ import annotations

import functools
import struct
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Final

__all__ = [
    "MAX_FRAMES",
    "FrameDecoder",
    "FramingError",
    "Outbox",
    "direct_enabled",
    "direct_path",
    "encode",
]

#: The most frames one message may have (a Jupyter message is 6 plus its buffers).
MAX_FRAMES: Final = 1 << 16

_COUNT = struct.Struct("<I")

Buffer = bytes | bytearray | memoryview


def direct_enabled(env: Mapping[str, str]) -> bool:
    """False if ``LOOM_DIRECT`` says ``off``/``0``/``no``/``false`` (engines then do not
    listen, clients do not connect: ZeroMQ carries shell, as for any other kernel)."""
    return env.get("LOOM_DIRECT", "").strip().lower() not in ("off", "0", "no", "false")


def direct_path(ipc_prefix: str) -> str:
    """Where the engine whose ipc sockets are ``<ipc_prefix>-<port>`` listens."""
    return f"{ipc_prefix}-direct"


class FramingError(Exception):
    """The stream does not follow the framing: it cannot be read any further."""


@functools.lru_cache(maxsize=64)
def _lengths(count: int) -> struct.Struct:
    """The struct of ``count`` frame lengths, made once per count (a handful are used)."""
    return struct.Struct(f"<{count}Q")


def encode(frames: Sequence[Buffer]) -> list[Buffer]:
    """``frames`` as buffers to write in order: the prefix, then the frames themselves."""
    return _encode(frames)[0]


def _encode(frames: Sequence[Buffer]) -> tuple[list[Buffer], int]:
    """:func:`encode`, and how many bytes the buffers hold in all."""
    count = len(frames)
    if not 0 < count <= MAX_FRAMES:
        raise FramingError(f"a message has 1 to {MAX_FRAMES} frames, not {count}")
    sizes = [len(f) if type(f) is bytes else _size(f) for f in frames]
    prefix = _COUNT.pack(count) + _lengths(count).pack(*sizes)
    return [prefix, *frames], len(prefix) + sum(sizes)


def _size(buffer: Buffer) -> int:
    """Bytes in ``buffer`` (a memoryview's ``len`` counts items, not bytes)."""
    return buffer.nbytes if type(buffer) is memoryview else len(buffer)


class FrameDecoder:
    """Bytes in, whole messages (lists of frames) out; see the module docstring."""

    def __init__(self) -> None:
        #: Bytes of a message not complete yet.
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole message yet."""
        return len(self._buffer)

    def feed(self, data: Buffer) -> list[list[bytes]]:
        """Take ``data``; every message it completes, in order. :class:`FramingError` if
        a prefix is impossible (the bytes after it are then never read)."""
        buffer = self._buffer
        if buffer:
            buffer += data
            with memoryview(buffer) as view:  # released before the buffer is resized
                messages, used = _parse(view)
            del buffer[:used]
            return messages
        # Nothing left over (a small message read whole, the usual case): parsed where it
        # is, and only an incomplete tail kept.
        with memoryview(data) as view:
            messages, used = _parse(view.cast("B") if view.format != "B" else view)
            if used < view.nbytes:
                buffer += view[used:]
        return messages


def _parse(view: memoryview) -> tuple[list[list[bytes]], int]:
    """The whole messages at the start of ``view``, and how many bytes they took."""
    messages: list[list[bytes]] = []
    size = view.nbytes
    start = 0
    while size - start >= 4:
        (count,) = _COUNT.unpack_from(view, start)
        if not 0 < count <= MAX_FRAMES:
            raise FramingError(f"a message of {count} frames (1 to {MAX_FRAMES} expected)")
        body = start + 4 + 8 * count
        if size < body:
            break
        lengths = _lengths(count).unpack_from(view, start + 4)
        if size - body < sum(lengths):
            break
        frames = []
        for length in lengths:
            frames.append(view[body : body + length].tobytes())
            body += length
        messages.append(frames)
        start = body
    return messages, start


class Outbox:
    """What is still to be written to a stream, as buffers in order (none copied).

    The driver writes :meth:`batch` with one ``sendmsg`` and reports how much went out
    (:meth:`written`); a partly written buffer stays as the rest of itself."""

    #: Buffers per ``sendmsg`` (Linux takes at most 1024, ``IOV_MAX``).
    BATCH: Final = 512

    def __init__(self) -> None:
        self._buffers: deque[memoryview] = deque()

    def __bool__(self) -> bool:
        return bool(self._buffers)

    def write(self, frames: Sequence[Buffer], sendmsg: Callable[[list[Buffer]], int]) -> None:
        """Write one message's ``frames``: now, with ``sendmsg`` (a socket's), as far as it
        takes them if nothing waits before them, and the rest later (:meth:`batch`).
        ``sendmsg``'s errors other than a full socket are the caller's."""
        buffers, size = _encode(frames)
        if self._buffers or len(buffers) > self.BATCH:
            self.add(buffers)
            return
        try:
            sent = sendmsg(buffers)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent < size:  # the socket is full: keep the rest
            self.add(buffers)
            self.written(sent)

    def add(self, buffers: Sequence[Buffer]) -> None:
        for buffer in buffers:
            view = memoryview(buffer)
            if view.nbytes:
                self._buffers.append(view if view.format == "B" else view.cast("B"))

    def batch(self) -> list[memoryview]:
        buffers = self._buffers
        if len(buffers) <= self.BATCH:
            return list(buffers)
        return [buffers[i] for i in range(self.BATCH)]

    def written(self, count: int) -> None:
        """``count`` bytes of the batch went out: drop them."""
        buffers = self._buffers
        while count:
            head = buffers[0]
            if count >= head.nbytes:
                count -= head.nbytes
                buffers.popleft()
            else:
                buffers[0] = head[count:]
                count = 0
