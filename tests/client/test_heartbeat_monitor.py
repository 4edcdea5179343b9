"""``HeartbeatMonitor``: silence is the kernel's, never our own loop's (issue 15, items 8, 22).

``PingClock`` is the rule, tested with exact times. The monitor is then run against
real kernels while this test *blocks its own event loop*, as a pager, ``%edit`` or a
paused terminal blocks the console's: a healthy kernel must not be called silent, a
stopped one must be, at once after the block.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from _support import Reaper, run

from kernel import KernelManager
from kernel.client import HeartbeatMonitor
from kernel.client._heartbeat_monitor import PingClock

KERNELS = ["loom", "python3"]
INTERVAL = 0.2
GRACE = 1.0
#: Longer than GRACE by far: what a pager held open for a few seconds does to the loop.
BLOCK = 2.5


def test_silence_counts_from_the_oldest_unanswered_ping() -> None:
    clock = PingClock(grace=1.0)
    assert clock.silence(5.0) == 0.0
    clock.pinged(b"a", 10.0)
    clock.pinged(b"b", 10.5)
    assert clock.silence(10.9) == pytest.approx(0.9)
    assert not clock.is_silent(10.9)
    assert clock.is_silent(11.0)
    assert clock.echoed(b"a")  # the kernel answered a: only b is waiting now
    assert clock.silence(11.0) == pytest.approx(0.5)
    assert not clock.is_silent(11.0)


def test_an_echo_answers_every_earlier_ping_and_a_stranger_nothing() -> None:
    clock = PingClock(grace=1.0)
    for n, at in enumerate((0.0, 0.5, 1.0)):
        clock.pinged(bytes([n]), at)
    assert not clock.echoed(b"unknown")
    assert clock.silence(3.0) == 3.0
    assert clock.echoed(bytes([1]))  # the kernel was alive after pings 0 and 1 were sent
    assert clock.silence(3.0) == 2.0
    assert clock.echoed(bytes([2]))
    assert clock.silence(3.0) == 0.0
    assert not clock.echoed(bytes([0]))  # answered already


def test_an_echo_read_late_still_answers_its_ping() -> None:
    """The loop was blocked 3 s: the echo that came meanwhile is read only now."""
    clock = PingClock(grace=1.0)
    clock.pinged(b"p", 0.0)
    clock.echoed(b"p")  # read at t=3
    assert not clock.is_silent(3.0)


def test_the_memory_of_pings_is_bounded() -> None:
    clock = PingClock(grace=1.0, limit=3)
    for n in range(10):
        clock.pinged(bytes([n]), float(n))
    assert clock.silence(10.0) == 3.0  # pings 7, 8, 9 remembered
    assert not clock.echoed(bytes([0]))


def block_the_loop(seconds: float) -> None:
    """Block the calling loop, as a pager in the foreground does: the condition under test."""
    time.sleep(seconds)


async def _monitored(kernel: str, reaper: Reaper, stop_kernel: bool) -> list[bool]:
    """Start ``kernel``, monitor it, block this loop for BLOCK s (SIGSTOPping the kernel
    meanwhile if ``stop_kernel``), then watch GRACE and a few rounds more; the transitions
    seen. No ping goes out while the loop is blocked, so a kernel stopped meanwhile is
    reported GRACE after the loop resumes (the block itself proves nothing)."""
    manager = KernelManager(kernel)
    await manager.start()
    pid = reaper.track_manager(manager)
    seen: list[bool] = []
    monitor = HeartbeatMonitor(manager.info.url("hb"), seen.append, interval=INTERVAL, grace=GRACE)
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(monitor.run())
            # The monitor starts responsive; prove the kernel answers before blocking.
            await asyncio.sleep(3 * INTERVAL)  # a few rounds of pings, all answered
            assert seen == [], seen
            if stop_kernel:
                os.kill(pid, signal.SIGSTOP)
            try:
                block_the_loop(BLOCK)
                # Resumed: a silence is one once GRACE has passed since a ping went out.
                await asyncio.sleep(GRACE + 3 * INTERVAL)
            finally:
                if stop_kernel:
                    os.kill(pid, signal.SIGCONT)
            task.cancel()
    finally:
        await manager.shutdown(now=True)
    return seen


@pytest.mark.peer
@pytest.mark.parametrize("kernel", KERNELS)
def test_a_blocked_loop_does_not_make_a_healthy_kernel_silent(kernel: str) -> None:
    async def scenario(reaper: Reaper) -> None:
        assert await _monitored(kernel, reaper, stop_kernel=False) == []

    run(scenario, timeout=60)


@pytest.mark.peer
def test_a_kernel_stopped_while_the_loop_was_blocked_is_still_reported() -> None:
    async def scenario(reaper: Reaper) -> None:
        seen = await _monitored("loom", reaper, stop_kernel=True)
        assert seen[:1] == [False]

    run(scenario, timeout=60)


def test_a_refused_ping_is_retried_before_a_verdict_and_only_lasting_refusal_is_silence() -> None:
    """A ping libzmq refused just before our loop blocked (found: a paused terminal)."""
    clock = PingClock(grace=1.0)
    clock.refused_at(0.0)
    assert clock.refused
    clock.refused_at(0.5)  # still refused: silence counts from the first refusal
    assert clock.silence(0.9) == pytest.approx(0.9)
    assert clock.is_silent(1.0)  # refused for grace: nobody is there to ping
    clock.pinged(b"p", 3.0)  # the retry after the block went out
    assert not clock.refused
    assert clock.silence(3.0) == 0.0
    assert not clock.is_silent(3.0)
    clock.refused_at(3.5)  # a sent ping still waiting counts from when it went
    assert clock.silence(4.0) == pytest.approx(1.0)
