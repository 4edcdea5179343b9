"""``kernel.transport._frames``: the fast paths send and report what pyzmq's own do.

They call pyzmq's Cython backend directly; if an upgrade changes it, these fail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from kernel.protocol import Session
from kernel.transport._frames import (
    ZERO_COPY_MIN,
    has_input,
    has_large_buffer,
    recv_frames,
    send_frames,
)


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.DEALER), ctx.socket(zmq.ROUTER)
    for sock in (a, b):
        sock.linger = 0
    b.bind("inproc://frames")
    a.connect("inproc://frames")
    yield a, b
    a.close()
    b.close()
    ctx.term()


def test_send_frames_sends_one_multipart_message_as_send_multipart_does(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    a, b = pair
    frames: list[bytes | bytearray | memoryview] = [
        b"<IDS|MSG>",
        b"sig",
        b"{}",
        b"",
        bytearray(b"buf"),
        memoryview(b"view"),
    ]
    send_frames(a, frames)
    a.send_multipart(frames)
    assert b.poll(5000)
    first = b.recv_multipart()
    second = b.recv_multipart()
    assert first == second
    assert first[1:] == [b"<IDS|MSG>", b"sig", b"{}", b"", b"buf", b"view"]
    send_frames(a, [b"alone"])
    assert b.poll(5000)
    assert b.recv_multipart()[1:] == [b"alone"]


def test_has_input_follows_the_queue(pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]) -> None:
    a, b = pair
    assert not has_input(b)
    send_frames(a, [b"x"])
    assert b.poll(5000)
    assert has_input(b)
    assert has_input(b) == bool(int(b.getsockopt(zmq.EVENTS)) & zmq.POLLIN)
    b.recv_multipart()
    assert not has_input(b)


def test_recv_frames_gives_large_buffers_as_views_and_everything_else_as_bytes(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    a, b = pair
    big, small = bytes(range(256)) * (ZERO_COPY_MIN // 256), b"small buffer"
    signed = [b"<IDS|MSG>", b"sig", b'{"h":1}', b"{}", b"{}", b"{}"]
    send_frames(a, [*signed, small, big])
    assert b.poll(5000)
    frames = recv_frames(b)
    identity, rest = frames[0], frames[1:]
    assert isinstance(identity, bytes)  # the ROUTER's routing id
    assert rest[:6] == signed
    assert all(type(f) is bytes for f in rest[:7])
    assert rest[6] == small
    view: object = rest[7]  # typed bytes: a view is a bytes-like frame
    assert isinstance(view, memoryview)
    assert view.readonly
    assert view == big
    # A large frame in the signed part (a big JSON content) is bytes, never a view.
    send_frames(a, [b"<IDS|MSG>", b"sig", b"{}", b"{}", b"{}", b"[" + b" " * ZERO_COPY_MIN + b"]"])
    assert b.poll(5000)
    assert all(type(f) is bytes for f in recv_frames(b))
    # Messages without a delimiter (a heartbeat) are plain bytes.
    send_frames(a, [big])
    assert b.poll(5000)
    assert [type(f) for f in recv_frames(b)] == [bytes, bytes]
    with pytest.raises(zmq.Again):
        recv_frames(b)


def test_a_session_keeps_received_views_as_buffers_without_copying() -> None:
    session = Session(b"key")
    data = bytearray(b"x" * ZERO_COPY_MIN)
    frames = session.serialize(session.message("apply_request", {}, buffers=[bytes(data)]))
    view = memoryview(data)
    received = session.deserialize([*frames[:-1], view])
    assert received.message.buffers[0] is view


def test_only_a_buffer_of_zero_copy_size_makes_a_send_zero_copy() -> None:
    assert not has_large_buffer([b"x" * (ZERO_COPY_MIN - 1), memoryview(b"small")])
    assert has_large_buffer([b"", memoryview(bytearray(ZERO_COPY_MIN))])
    assert not has_large_buffer([])
