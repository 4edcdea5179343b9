"""``MessageSocket``: a waiting reader is woken by input only.

A ZeroMQ socket's descriptor stays readable until ``ZMQ_EVENTS`` is read. When a message
arrived, the loop's reader callback set the reader's event at once, and the loop, which
polls again before the woken reader runs, saw the descriptor still readable and set it
again: the reader, back to waiting after taking the message, was woken for nothing. An
engine's shell loop paid that once per task (a loop iteration, a task step through
``recv``, a future). The callback now reads ``ZMQ_EVENTS`` first.
"""

from __future__ import annotations

import asyncio

import zmq
from _socket_pair import message_socket_pair


def test_a_reader_waiting_again_after_a_message_is_not_woken_for_nothing() -> None:
    async def scenario() -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        a, b = message_socket_pair(ctx, "wakeups")
        drains = 0
        drain = a._drain

        def counting() -> None:
            nonlocal drains
            drains += 1
            drain()

        a._drain = counting  # type: ignore[method-assign]
        try:
            async with asyncio.timeout(10):
                for n in range(10):
                    waiting = asyncio.ensure_future(a.recv())
                    await b.send(b.session.message("ping", {"n": n}))
                    assert (await waiting).message.content == {"n": n}
                    # Waiting again, with nothing sent: a few loop iterations must not
                    # step the reader through another drain.
                    drains = 0
                    again = asyncio.ensure_future(a.recv())
                    for _ in range(5):
                        await asyncio.sleep(0)
                    assert drains == 1, f"message {n}: {drains} drains while waiting"
                    again.cancel()
                    await asyncio.gather(again, return_exceptions=True)
        finally:
            a.close()
            b.close()
            ctx.term()

    asyncio.run(scenario())
