"""``MessageSocket`` reads ``ZMQ_EVENTS`` only when its last answer may be stale.

Each read is a ``poll`` and a ``getpid`` in libzmq and an enum in pyzmq. A server's
request and reply (the kernel's shell loop, an engine's task) read it five times: in
the loop's reader callback, twice while draining, after the send, and once more when
the loop went back to waiting. Two of those repeated an answer nothing could have
changed: input stays until it is received, and after a read that saw none, an arriving
message makes the descriptor fire. And a third: the drain asked again after taking the
request whether more waited, which the read after the reply's send answers too (the
drain now takes one message per ``recv``). Never skipped: the read after a send, and a
read between a receive and the next. Then a fourth: the callback's own read, when a reader
waits (the edge announces a message nearly always; the reader's receive takes it).
"""

from __future__ import annotations

import asyncio

import pytest
import zmq
from _socket_pair import message_socket_pair

from kernel.transport import _socket


def test_a_request_and_its_reply_read_zmq_events_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[zmq.Socket[bytes]] = []
    real = _socket.has_input  # type: ignore[attr-defined]

    def counting(sock: zmq.Socket[bytes]) -> bool:
        reads.append(sock)
        return real(sock)

    monkeypatch.setattr(_socket, "has_input", counting)

    async def scenario() -> list[int]:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        server, client = message_socket_pair(ctx, "events-reads")
        per_request: list[int] = []

        async def serve() -> None:  # what KernelServer._serve_shell does
            while True:
                request = (await server.recv()).message
                await server.send(server.session.message("reply", request.content))

        serving = asyncio.ensure_future(serve())
        try:
            async with asyncio.timeout(10):
                for _ in range(3):  # let the server settle into waiting
                    await client.send(client.session.message("request", {}))
                    await client.recv()
                for n in range(20):
                    reads.clear()
                    await client.send(client.session.message("request", {"n": n}))
                    assert (await client.recv()).message.content == {"n": n}
                    for _ in range(3):  # the server is back to waiting
                        await asyncio.sleep(0)
                    per_request.append(sum(1 for sock in reads if sock is server.socket))
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            server.close()
            client.close()
            ctx.term()
        return per_request

    per_request = asyncio.run(scenario())
    # Five at first: the callback, two in the drain, after the send, the next drain;
    # then three; then the callback and after the send; now only after the send.
    assert max(per_request) <= 1, per_request


def test_an_edge_without_a_message_costs_the_waiting_reader_nothing() -> None:
    """A peer connecting fires the descriptor with no message (libzmq's commands): the
    woken reader finds nothing, waits again, and the next message still wakes it."""

    async def scenario() -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        server, client = message_socket_pair(ctx, "events-stray")
        try:
            async with asyncio.timeout(10):
                await client.send(client.session.message("first", {}))
                assert (await server.recv()).message.msg_type == "first"
                waiting = asyncio.ensure_future(server.recv())
                await asyncio.sleep(0)  # waiting in recv
                stray = ctx.socket(zmq.DEALER)  # commands on the server socket, no message
                stray.linger = 0
                stray.connect(server.socket.get_string(zmq.LAST_ENDPOINT))
                for _ in range(20):  # let the connection's commands reach the socket
                    await asyncio.sleep(0.01)
                assert not waiting.done()
                stray.close()
                await client.send(client.session.message("second", {}))
                assert (await waiting).message.msg_type == "second"
        finally:
            server.close()
            client.close()
            ctx.term()

    asyncio.run(scenario())


def test_messages_queued_behind_one_are_all_received() -> None:
    """The receive makes the answer unknown: a burst is drained to the last message."""

    async def scenario() -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        a, b = message_socket_pair(ctx, "events-reads")
        try:
            async with asyncio.timeout(10):
                for n in range(50):
                    await b.send(b.session.message("burst", {"n": n}))
                got = [(await a.recv()).message.content["n"] for _ in range(50)]
                assert got == list(range(50))
                await a.send(a.session.message("after", {}))  # a send in between
                await b.send(b.session.message("late", {}))
                assert (await a.recv()).message.msg_type == "late"
        finally:
            a.close()
            b.close()
            ctx.term()

    asyncio.run(scenario())
