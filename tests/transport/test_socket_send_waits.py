"""``MessageSocket.send`` on a socket with no peer waits on the loop, never in libzmq.

A DEALER with no pipe (nothing connected yet, or a connection whose Curve handshake was
refused and is not yet retried) blocks a plain send. The console's send of its first
``kernel_info_request`` then stopped its loop, so the handshake watch that says "authentication
failed" never ran and the console hung: 1 run in 20 on a loaded machine.
"""

from __future__ import annotations

import asyncio

import pytest
import zmq

from kernel.protocol import Session
from kernel.transport._socket import MessageSocket

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("payload", [b"", b"x" * (1 << 20)], ids=["small", "zero-copy"])
def test_a_send_with_no_peer_yet_leaves_the_loop_running_and_goes_out_once_one_connects(
    payload: bytes,
) -> None:
    async def scenario() -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        dealer: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
        router: zmq.Socket[bytes] = ctx.socket(zmq.ROUTER)
        for sock in (dealer, router):
            sock.linger, sock.sndhwm, sock.rcvhwm = 0, 0, 0
        session = Session(b"key")
        sender = MessageSocket(dealer, session, "shell")
        message = session.message("kernel_info_request", {}, buffers=[payload] if payload else [])
        try:
            sending = asyncio.ensure_future(sender.send(message))
            ticks = 0
            while ticks < 5:  # the loop keeps running while the send has nowhere to go
                await asyncio.sleep(0)
                ticks += 1
            assert not sending.done()
            router.bind("inproc://send-waits")
            dealer.connect("inproc://send-waits")
            async with asyncio.timeout(5):
                await sending
            assert router.poll(5000) == zmq.POLLIN
            frames = router.recv_multipart()
            received = session.fork().deserialize(frames).message
            assert received.msg_id == message.msg_id
            assert [bytes(b) for b in received.buffers] == ([payload] if payload else [])
        finally:
            sender.close()
            router.close(linger=0)
            ctx.term()

    asyncio.run(scenario())
