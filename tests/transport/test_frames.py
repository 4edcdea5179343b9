"""``kernel.transport._frames``: the fast paths send and report what pyzmq's own do.

They call pyzmq's Cython backend directly; if an upgrade changes it, these fail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from kernel.transport._frames import has_input, send_frames


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
