"""``MessageSocket.deliver`` and ``add_route``: messages that arrive another way (an
engine's direct shell) join the socket's line, and replies to them leave that way."""

from __future__ import annotations

import asyncio

import zmq
from _socket_pair import message_socket_pair

from kernel.protocol import Message, Received


def test_a_delivered_message_wakes_the_reader_and_its_reply_takes_the_route() -> None:
    async def scenario() -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        a, b = message_socket_pair(ctx, "routes")
        routed: list[tuple[str, list[bytes]]] = []

        def route(message: Message, identities: list[bytes]) -> None:
            routed.append((message.msg_type, identities))

        try:
            async with asyncio.timeout(10):
                a.add_route(b"side", route)
                waiting = asyncio.ensure_future(a.recv())
                await asyncio.sleep(0)  # the reader waits in recv
                request = b.session.message("ping", {"n": 1})
                a.deliver(Received([b"side", b"7"], request))
                received = await waiting
                assert received.identities == [b"side", b"7"]
                assert received.message.content == {"n": 1}
                await a.send(a.session.message("pong", {}), received.identities)
                assert routed == [("pong", [b"side", b"7"])]
                # Other identities (none here) still go out on the socket itself.
                await a.send(a.session.message("pong", {"zmq": True}))
                assert (await b.recv()).message.content == {"zmq": True}
                assert len(routed) == 1
        finally:
            a.close()
            b.close()
            ctx.term()

    asyncio.run(scenario())
