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
import mmap
import struct
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Final

__all__ = [
    "MAX_FRAMES",
    "SOCKET_BUFFER",
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


#: Socket buffer sizes asked for at both ends (bytes; the kernel caps them at its
#: ``net.core.wmem_max``/``rmem_max``): with Linux's default ~208 KiB, a 10 MB message
#: took ~50 round trips of "full, wake the reader, room again".
SOCKET_BUFFER: Final = 4 << 20


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


#: A message whose frames hold this many bytes or more in all is read in place: into one
#: anonymous mapping of its size (:meth:`FrameDecoder.sink`), its large frames handed on as
#: read-only views of it, so it is copied once (from the kernel), not three times.
LARGE: Final = 64 << 10
#: Bodies up to this size are allocated from the heap, larger ones mapped (``_start_large``).
HEAP_MAX: Final = 64 << 20


class FrameDecoder:
    """Bytes in, whole messages (lists of frames) out; see the module docstring.

    A driver reads into :meth:`sink` when it gives a buffer (the rest of a large message,
    :data:`LARGE`) and reports the bytes with :meth:`filled`; otherwise it reads into its
    own buffer and :meth:`feed`s them."""

    def __init__(self) -> None:
        #: Bytes of a message not complete yet (a small one, or a large one's prefix).
        self._buffer = bytearray()
        #: A large message being read in place: its frame lengths, its body, bytes in.
        self._lengths: tuple[int, ...] = ()
        self._body: bytearray | mmap.mmap | None = None
        self._filled = 0

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole message yet."""
        return len(self._buffer) + self._filled

    def sink(self) -> memoryview | None:
        """Where the next bytes go (the rest of a large message's body), or None."""
        return None if self._body is None else memoryview(self._body)[self._filled :]

    def filled(self, count: int) -> list[list[bytes]]:
        """``count`` bytes were read into :meth:`sink`; the message, once it is whole."""
        assert self._body is not None
        self._filled += count
        if self._filled < len(self._body):
            return []
        body, lengths = self._body, self._lengths
        self._body, self._lengths, self._filled = None, (), 0
        return [_split(memoryview(body).toreadonly(), 0, lengths)]

    def read(
        self, recv_into: Callable[[bytearray | memoryview], int], scratch: bytearray
    ) -> tuple[list[list[bytes]], bool]:
        """One read with ``recv_into`` (a socket's): into the rest of a large message in
        place (:meth:`sink`), else into ``scratch``. The messages it completed, and whether
        it filled what it was given (more may wait). :class:`EOFError` at the stream's
        end; ``recv_into``'s own errors are the caller's."""
        sink = self.sink()
        target = scratch if sink is None else sink
        size = recv_into(target)
        if not size:
            raise EOFError
        if sink is not None:
            return self.filled(size), size == sink.nbytes
        with memoryview(scratch) as view:
            return self.feed(view[:size]), size == len(scratch)

    def feed(self, data: Buffer) -> list[list[bytes]]:
        """Take ``data``; every message it completes, in order. :class:`FramingError` if
        a prefix is impossible (the bytes after it are then never read)."""
        if self._body is not None:  # read past a large body's sink: fill it, then go on
            with memoryview(data) as view:
                view = view.cast("B") if view.format != "B" else view
                room = len(self._body) - self._filled
                self.sink()[: min(room, view.nbytes)] = view[:room]  # type: ignore[index]
                messages = self.filled(min(room, view.nbytes))
                return messages + (self.feed(view[room:]) if view.nbytes > room else [])
        buffer = self._buffer
        if buffer:
            buffer += data
            with memoryview(buffer) as view:  # released before the buffer is resized
                messages, used = _parse(view)
                rest = self._start_large(view[used:])
            del buffer[: used + rest]
            return messages
        # Nothing left over (a small message read whole, the usual case): parsed where it
        # is, and only an incomplete tail kept.
        with memoryview(data) as view:
            view = view.cast("B") if view.format != "B" else view
            messages, used = _parse(view)
            used += self._start_large(view[used:])
            if used < view.nbytes:
                buffer += view[used:]
        return messages

    def _start_large(self, tail: memoryview) -> int:
        """If ``tail`` (what :func:`_parse` left) starts a large message whose prefix is
        whole, read it in place from now on; the bytes of ``tail`` taken (0: none)."""
        if tail.nbytes < 4:
            return 0
        (count,) = _COUNT.unpack_from(tail, 0)  # checked by _parse already
        body = 4 + 8 * count
        if tail.nbytes < body:
            return 0
        lengths = _lengths(count).unpack_from(tail, 4)
        total = sum(lengths)
        if total < LARGE:
            return 0
        try:
            # Up to HEAP_MAX from the heap: malloc hands a process that keeps receiving
            # such messages memory already faulted in (a fresh mapping each time was ~2x
            # slower at 10-30 MB). Above it anonymous memory, real only once written, so
            # a peer that declares a huge length and never sends it holds nothing.
            buffer: bytearray | mmap.mmap = (
                bytearray(total) if total <= HEAP_MAX else mmap.mmap(-1, total)
            )
        except (OSError, OverflowError, ValueError, MemoryError) as exc:
            raise FramingError(f"a message of {total} bytes cannot be held here: {exc}") from None
        self._lengths, self._body = lengths, buffer
        have = tail.nbytes - body  # less than total: _parse took every whole message
        self._body[:have] = tail[body:]
        self._filled = have
        return tail.nbytes


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
        total = sum(lengths)
        if size - body < total:
            break
        messages.append(_split(view, body, lengths, copy=True))
        start = body + total
    return messages, start


def _split(
    view: memoryview, start: int, lengths: tuple[int, ...], *, copy: bool = False
) -> list[bytes]:
    """The frames of ``lengths`` in ``view`` from ``start``: bytes, or, without ``copy``,
    read-only views for frames of :data:`LARGE` bytes or more (as ``recv_frames`` gives
    a ZeroMQ message's large buffers)."""
    frames: list[bytes] = []
    for length in lengths:
        frame = view[start : start + length]
        frames.append(frame if not copy and length >= LARGE else frame.tobytes())  # type: ignore[arg-type]
        start += length
    return frames


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
