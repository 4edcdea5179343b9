"""``MessageSocket.recv``: a waiting reader steps inside the reader callback (``_Wake``).

An ``asyncio.Event`` set by the reader callback only scheduled the reader's wake-up for
the loop's next iteration (a handle, an ``epoll_wait`` that returned at once): about
10 us per request on an engine's or a kernel's shell loop. The reader now steps in the
callback itself, unless a task is running there (a send that found input), where it is
scheduled as before; a timeout around ``recv`` still cancels it cleanly.
"""

from __future__ import annotations

import asyncio
import traceback

import zmq
from _socket_pair import message_socket_pair

from kernel.protocol import Received
from kernel.transport._socket import MessageSocket


def _callers() -> set[str]:
    return {frame.name for frame in traceback.extract_stack()}


def _run(scenario_with: object) -> None:
    async def scenario() -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        a, b = message_socket_pair(ctx, f"direct-wake-{id(scenario)}")
        try:
            async with asyncio.timeout(10):
                await scenario_with(a, b)  # type: ignore[operator]
        finally:
            a.close()
            b.close()
            ctx.term()

    asyncio.run(scenario())


def test_a_waiting_reader_steps_inside_the_reader_callback() -> None:
    async def check(a: MessageSocket, b: MessageSocket) -> None:
        seen: list[set[str]] = []

        async def reader() -> Received:
            received = await a.recv()
            seen.append(_callers())  # still in the step that recv's wake-up ran
            return received

        for n in range(3):
            waiting = asyncio.ensure_future(reader())
            await asyncio.sleep(0)  # waiting in recv
            await b.send(b.session.message("ping", {"n": n}))
            assert (await waiting).message.content == {"n": n}
        # The callback's frame is below the reader's: it ran the reader's step itself.
        assert all("_fired" in callers for callers in seen), seen

    _run(check)


def test_a_timeout_around_recv_cancels_it_and_the_socket_still_reads() -> None:
    async def check(a: MessageSocket, b: MessageSocket) -> None:
        for _ in range(3):
            try:
                async with asyncio.timeout(0.01):
                    await a.recv()
            except TimeoutError:
                pass
            else:
                raise AssertionError("nothing was sent: recv returned")
        assert a._waiters == []
        await b.send(b.session.message("ping", {"n": 1}))
        assert (await a.recv()).message.content == {"n": 1}

    _run(check)


def test_readers_waiting_together_are_all_woken() -> None:
    async def check(a: MessageSocket, b: MessageSocket) -> None:
        readers = [asyncio.ensure_future(a.recv()) for _ in range(2)]
        await asyncio.sleep(0)
        await b.send(b.session.message("ping", {"n": 1}))
        await b.send(b.session.message("ping", {"n": 2}))
        got = await asyncio.gather(*readers)
        assert sorted(r.message.content["n"] for r in got) == [1, 2]

    _run(check)


def test_a_send_that_finds_input_schedules_the_reader_rather_than_nesting_it() -> None:
    async def check(a: MessageSocket, b: MessageSocket) -> None:
        # A reader waits on a; input reaches a while another task sends on a, whose
        # send reads ZMQ_EVENTS and finds it: the reader must not step inside that task
        # (asyncio refuses to enter a task while another runs).
        await a.send(a.session.message("warm", {}))  # a watched, b has a message
        assert (await b.recv()).message.msg_type == "warm"
        reader = asyncio.ensure_future(a.recv())
        await asyncio.sleep(0)
        b.socket.send_multipart(b.session.serialize(b.session.message("ping", {"n": 7})))
        assert a.socket.poll(5000)  # arrived (the loop's callback may not have seen it)
        await a.send(a.session.message("pong", {}))  # in this task: finds the input
        assert (await reader).message.content == {"n": 7}
        assert "_maybe_readable" not in _callers()

    _run(check)
