"""The direct shell's framing (``parallel/protocol/_direct_frames.py``): exact bytes in,
exact messages out, however the stream cuts them."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy
import pytest

from parallel.protocol._direct_frames import (
    MAX_FRAMES,
    FrameDecoder,
    FramingError,
    Outbox,
    direct_enabled,
    direct_path,
    encode,
)


def _wire(frames: list[bytes]) -> bytes:
    return b"".join(bytes(b) for b in encode(frames))


def test_encode_is_the_count_the_lengths_then_the_frames_uncopied() -> None:
    body = bytearray(b"payload")
    buffers = encode([b"<IDS|MSG>", b"", body])
    assert bytes(buffers[0]) == struct.pack("<I3Q", 3, 9, 0, 7)
    assert buffers[1:] == [b"<IDS|MSG>", b"", body]
    assert buffers[3] is body  # written as it is, not copied into the prefix


def test_a_stream_fed_a_byte_at_a_time_gives_each_message_once_in_order() -> None:
    first, second = [b"a", b"", b"ccc"], [b"x" * 300]
    stream = _wire(first) + _wire(second)
    decoder = FrameDecoder()
    out: list[list[bytes]] = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i : i + 1])
    assert out == [first, second]
    assert decoder.pending == 0


def test_several_messages_in_one_read_and_a_part_of_the_next_kept() -> None:
    messages = [[b"m%d" % i, b"body"] for i in range(3)]
    stream = b"".join(_wire(m) for m in messages) + _wire([b"late"])[:6]
    decoder = FrameDecoder()
    assert decoder.feed(stream) == messages
    assert decoder.pending == 6
    assert decoder.feed(_wire([b"late"])[6:]) == [[b"late"]]


@pytest.mark.parametrize("count", [0, MAX_FRAMES + 1, 0xFFFFFFFF])
def test_an_impossible_frame_count_breaks_the_stream(count: int) -> None:
    with pytest.raises(FramingError, match=f"a message of {count} frames"):
        FrameDecoder().feed(struct.pack("<I", count) + b"\0" * 16)
    with pytest.raises(FramingError, match="frames, not"):
        encode([b"x"] * count if count <= MAX_FRAMES + 1 else [])


def test_a_large_declared_length_only_waits_and_an_impossible_one_breaks_the_stream() -> None:
    decoder = FrameDecoder()
    # 1 GiB declared, 3 bytes sent: read in place into anonymous memory, nothing written.
    assert decoder.feed(struct.pack("<IQ", 1, 1 << 30) + b"abc") == []
    assert decoder.pending == 3
    sink = decoder.sink()
    assert sink is not None
    assert sink.nbytes == (1 << 30) - 3
    with pytest.raises(FramingError, match="cannot be held here"):
        FrameDecoder().feed(struct.pack("<IQ", 1, 1 << 62))


def test_a_large_message_is_read_in_place_and_its_buffer_handed_on_uncopied() -> None:
    big = bytes(range(256)) * 1024  # 256 KiB: above LARGE
    stream = _wire([b"<IDS|MSG>", b"head", big]) + _wire([b"next"])
    decoder = FrameDecoder()
    assert decoder.feed(stream[:1000]) == []  # the prefix and a start
    sink = decoder.sink()
    assert sink is not None
    rest = len(stream) - len(_wire([b"next"]))
    sink[: rest - 1000] = stream[1000:rest]
    [message] = decoder.filled(rest - 1000)
    assert message[:2] == [b"<IDS|MSG>", b"head"]
    assert isinstance(message[2], memoryview)
    assert message[2].readonly
    assert bytes(message[2]) == big
    assert decoder.sink() is None
    assert decoder.feed(stream[rest:]) == [[b"next"]]
    # Bytes read past the large body (a driver's own buffer) fill it, then go on.
    decoder = FrameDecoder()
    assert decoder.feed(stream) == [[b"<IDS|MSG>", b"head", big], [b"next"]]


def test_the_outbox_drops_what_was_written_and_keeps_the_rest_of_a_buffer() -> None:
    outbox = Outbox()
    outbox.add([b"abc", b"", memoryview(b"defg")])
    assert [bytes(b) for b in outbox.batch()] == [b"abc", b"defg"]  # empty ones skipped
    outbox.written(4)
    assert [bytes(b) for b in outbox.batch()] == [b"efg"]
    outbox.written(3)
    assert not outbox


def test_the_outbox_hands_out_at_most_a_batch_of_buffers_per_write() -> None:
    outbox = Outbox()
    outbox.add([b"x"] * (Outbox.BATCH + 3))
    assert len(outbox.batch()) == Outbox.BATCH
    outbox.written(Outbox.BATCH)
    assert len(outbox.batch()) == 3


def test_a_multidimensional_buffer_is_written_as_its_bytes() -> None:
    array = numpy.arange(6, dtype="<i4").reshape(2, 3)
    outbox = Outbox()
    outbox.add([memoryview(array)])
    [view] = outbox.batch()
    assert view.nbytes == 24
    assert bytes(view) == array.tobytes()


def test_loom_direct_off_and_the_path_beside_the_ipc_sockets() -> None:
    assert direct_enabled({})
    assert direct_enabled({"LOOM_DIRECT": "on"})
    assert not any(direct_enabled({"LOOM_DIRECT": v}) for v in ("off", "0", "No", " false"))
    assert direct_path("/tmp/loom-x/e-1234abcd") == "/tmp/loom-x/e-1234abcd-direct"


def _taking(limit: int | None, written: list[bytes]) -> Callable[[list[Any]], int]:
    """A ``sendmsg`` that takes at most ``limit`` bytes (None: all) into ``written``."""

    def sendmsg(buffers: list[Any]) -> int:
        data = b"".join(bytes(b) for b in buffers)[:limit]
        written.append(data)
        return len(data)

    return sendmsg


def test_outbox_write_sends_at_once_and_keeps_only_what_the_socket_did_not_take() -> None:
    written: list[bytes] = []
    outbox = Outbox()
    outbox.write([b"abc"], _taking(None, written))
    assert not outbox
    assert written == [_wire([b"abc"])]
    outbox.write([b"defgh"], _taking(14, written))  # the 12-byte prefix and "de"
    assert b"".join(bytes(b) for b in outbox.batch()) == b"fgh"
    outbox.write([b"ij"], _taking(None, written))  # queued behind the rest, not sent
    assert len(written) == 2
    assert b"".join(bytes(b) for b in outbox.batch()) == b"fgh" + _wire([b"ij"])


def test_outbox_write_on_a_full_socket_keeps_the_whole_message() -> None:
    def full(buffers: list[Any]) -> int:
        raise BlockingIOError

    outbox = Outbox()
    outbox.write([b"xyz"], full)
    assert b"".join(bytes(b) for b in outbox.batch()) == _wire([b"xyz"])
