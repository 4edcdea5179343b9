"""``iopub_welcome`` (messaging spec 5.5) greets every subscriber, and a flood of
subscriptions costs the other clients almost nothing (issue 15 item 20).

Before: each subscription, authenticated or not, sent a welcome to all clients (XPUB
cannot address one subscriber), so 300 subscriptions meant 300 welcomes per client.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
from _kernel_e2e import isolate_kernel_env, loom_kernel, raw_socket
from _support import Reaper, run

from kernel.protocol import Message, Session
from kernel.server.channels._welcome import WELCOME_INTERVAL, WelcomePacer

TIMEOUT = 20.0
SUBSCRIBERS = 300


@pytest.fixture(autouse=True)
def _kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_kernel_env(monkeypatch, tmp_path)


# -- the pacer, pure -------------------------------------------------------------------


def test_the_first_subscription_after_a_quiet_spell_is_greeted_at_once() -> None:
    pacer = WelcomePacer(interval=0.1)
    assert pacer.next_in(0.0) is None
    pacer.subscribed(b"")
    assert pacer.next_in(5.0) == 0.0
    assert pacer.due(5.0) == [b""]
    assert not pacer.is_pending
    assert pacer.due(5.0) == []  # each subscription is greeted once


def test_subscriptions_within_the_interval_are_greeted_together_once_it_is_over() -> None:
    pacer = WelcomePacer(interval=0.1)
    pacer.subscribed(b"")
    assert pacer.due(1.0) == [b""]
    for _ in range(2000):
        pacer.subscribed(b"")
    pacer.subscribed(b"kernel.x")
    assert pacer.due(1.05) == []  # too soon after the last greeting
    assert pacer.next_in(1.05) == pytest.approx(0.05)
    assert pacer.due(1.1) == [b"", b"kernel.x"]  # 2,001 subscriptions, two welcomes
    assert pacer.next_in(1.1) is None


def test_a_batch_greets_few_distinct_topics_but_always_the_empty_one() -> None:
    pacer = WelcomePacer(interval=0.1, max_topics=3)
    for n in range(10):
        pacer.subscribed(b"t%d" % n)
    pacer.subscribed(b"")
    assert pacer.skipped == 8
    assert pacer.due(0.0) == [b"t0", b"t1", b""]


# -- a real kernel ---------------------------------------------------------------------


async def next_message(sock: zmq.asyncio.Socket, session: Session) -> Message:
    """The next message on ``sock``; ``session`` is this socket's own (replays are per
    session, and every subscriber receives the same welcomes)."""
    async with asyncio.timeout(TIMEOUT):
        return session.deserialize(await sock.recv_multipart()).message


def test_a_flood_of_subscriptions_greets_each_subscriber_but_not_everyone_each_time() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:

            def session() -> Session:
                return Session(k.info.key, k.info.signature_scheme)

            watching = session()
            watcher = raw_socket(k.info, "iopub", zmq.SUB)
            flood: list[zmq.asyncio.Socket] = []
            try:
                watcher.subscribe(b"")
                welcome = await next_message(watcher, watching)
                assert welcome.msg_type == "iopub_welcome"
                assert welcome.content == {"subscription": ""}

                started = time.monotonic()
                for _ in range(SUBSCRIBERS):
                    sock = raw_socket(k.info, "iopub", zmq.SUB)
                    flood.append(sock)
                    sock.subscribe(b"")
                greeted = await asyncio.gather(*(next_message(s, session()) for s in flood))
                elapsed = time.monotonic() - started
                assert {m.msg_type for m in greeted} == {"iopub_welcome"}  # every one greeted
                for sock in flood:  # unread welcomes would keep this loop busy, not the kernel
                    sock.close(linger=0)

                # iopub is ordered: once this request's idle is in, so is every welcome
                # sent before it, and all were sent before the last subscriber got one.
                reply = await k.client.execute("'done'", timeout=TIMEOUT)
                welcomes = 0
                while True:
                    message = await next_message(watcher, watching)
                    welcomes += message.msg_type == "iopub_welcome"
                    status = message.content.get("execution_state")
                    if message.parent_id == reply.parent_id and status == "idle":
                        break
                # Paced: at most one batch per interval (plus the one at once), never
                # one per subscription.
                assert welcomes <= elapsed / WELCOME_INTERVAL + 2, (welcomes, elapsed)
                assert welcomes < SUBSCRIBERS // 5
            finally:
                watcher.close(linger=0)
                for sock in flood:
                    sock.close(linger=0)

    run(scenario)
