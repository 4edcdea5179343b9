"""The hub's refusal log after a restore (``_hub.HubRefusals``): engines that outlived
the controller send what they queued meanwhile (pings, task records), dated before the
new start and naming the old instance. A flood of those has a budget of its own, so the
line of a real replay refused at the same time is still logged. In-process: the hub's
kind of socket (a ROUTER under ``MessageSocket``, its session as a restored controller
sets it up) and a DEALER peer."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import zmq

from kernel.protocol import Session
from kernel.protocol._freshness import OUTLIVED_RESTART, address_to
from kernel.transport import MessageSocket
from parallel.controller._hub import HubRefusals

KEY = b"k" * 32
STALE = 30  # well over the 5 lines a budget allows per window


async def flood_then_replay(caplog: pytest.LogCaptureFixture) -> list[str]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.sndhwm = 0
    router.linger = 0
    dealer = context.socket(zmq.DEALER)
    dealer.linger = 0
    try:
        port = router.bind_to_random_port("tcp://127.0.0.1")
        hub = Session(KEY)  # as the restored controller's: only this start is taken
        hub.not_before, hub.instance, hub.strict_instance = time.time(), "new", False
        sock = MessageSocket(router, hub, "hub")
        sock.rejected = HubRefusals(logging.getLogger("loom.controller"))
        dealer.connect(f"tcp://127.0.0.1:{port}")
        peer = Session(KEY)
        for _ in range(STALE):  # an engine's pings, queued while the controller was down
            ping = peer.message("engine_ping_request", {"uuid": "u"})
            ping.header["date"] = "2000-01-01T00:00:00Z"
            address_to(ping.header, "old")
            dealer.send_multipart(peer.serialize(ping))
        taken = peer.message("connection_request", {})
        address_to(taken.header, "new")
        frames = peer.serialize(taken)
        dealer.send_multipart(frames)
        dealer.send_multipart(frames)  # the same signed frames again: a real replay
        last = peer.message("connection_request", {})
        dealer.send_multipart(peer.serialize(last))
        async with asyncio.timeout(30):
            answered = [(await sock.recv()).message.msg_id for _ in range(2)]
        assert answered == [taken.msg_id, last.msg_id]
        sock.close()
    finally:
        dealer.close(linger=0)
        router.close(linger=0)
        context.term()
    return [r.getMessage() for r in caplog.records if "dropped invalid message" in r.getMessage()]


def test_a_flood_from_peers_that_outlived_a_restore_leaves_a_replays_line_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="loom.controller")
    lines = asyncio.run(flood_then_replay(caplog))
    stale = [line for line in lines if OUTLIVED_RESTART in line]
    assert 1 <= len(stale) <= 5, stale  # its own budget: 5 lines per window, then a count
    assert all("engine_ping_request" in line for line in stale)
    replayed = [line for line in lines if OUTLIVED_RESTART not in line]
    assert len(replayed) == 1, lines
    assert "connection_request" in replayed[0]
    assert "signature was already used" in replayed[0]
