"""``KernelWatcher``: dead or not responding, decided the same way for every front end.

Real kernels, real signals: a SIGSTOPped kernel is alive but silent (not
responding), a SIGKILLed one is dead. Every kernel is killed by PID afterwards
(``_support.Reaper``); every scenario runs under ``asyncio.timeout``. The
heartbeat is watched by a real :class:`HeartbeatMonitor` with a short grace, so
a silence is noticed within about a second.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from _support import Reaper, run

from kernel import KernelManager
from kernel.client import (
    HeartbeatBack,
    HeartbeatLost,
    HeartbeatMonitor,
    KernelExited,
    KernelWatcher,
    WatchEvent,
)
from kernel.client._watch import port_refuses

pytestmark = pytest.mark.peer

KERNELS = ["loom", "python3"]
#: Seconds within which each expected event must come (the monitor's grace is 1 s).
EVENT_TIMEOUT = 15.0
#: What an attached kernel's death looks like: no echo, and nothing on its port.
VANISHED = KernelExited("stopped answering its heartbeat and its ports are closed")


class Watched:
    """A kernel, a watcher on it fed by a fast heartbeat monitor, and what it reported."""

    def __init__(self, manager: KernelManager, pid: int, *, attached: bool) -> None:
        self.manager = manager
        self.pid = pid
        self.events: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self.reported: list[WatchEvent] = []
        self.beats: list[bool] = []  # the monitor's transitions, for a failure's message
        process = None if attached else manager.process
        self.watcher = KernelWatcher(self.report, info=manager.info, process=process)

    def report(self, event: WatchEvent) -> None:
        self.reported.append(event)
        self.events.put_nowait(event)

    def heartbeat_changed(self, responsive: bool) -> None:
        self.beats.append(responsive)
        self.watcher.heartbeat_changed(responsive)

    async def next_event(self) -> WatchEvent:
        try:
            async with asyncio.timeout(EVENT_TIMEOUT):
                return await self.events.get()
        except TimeoutError:
            raise AssertionError(
                f"no event within {EVENT_TIMEOUT} s; {await self.describe()}"
            ) from None

    async def describe(self) -> str:
        """What the watcher saw, and what is true of the kernel now (for a failure)."""
        process = self.manager.process
        status = process.returncode if process is not None else "no process"
        info = self.manager.info
        refused = await port_refuses(info.ip, info.hb_port)
        return (
            f"heartbeat transitions {self.beats}, events so far {self.reported}; "
            f"kernel pid {self.pid}: exit status {status}, heartbeat port {info.hb_port} "
            f"{'refuses' if refused else 'accepts'} connections"
        )

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)


@asynccontextmanager
async def watched(kernel: str, reaper: Reaper, *, attached: bool) -> AsyncIterator[Watched]:
    manager = KernelManager(kernel)
    await manager.start()
    w = Watched(manager, reaper.track_manager(manager), attached=attached)
    hb = HeartbeatMonitor(manager.info.url("hb"), w.heartbeat_changed, interval=0.2, grace=1.0)
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(hb.run()), tg.create_task(w.watcher.run())]
            try:
                yield w
            finally:
                for task in tasks:
                    task.cancel()
    finally:
        await manager.shutdown(now=True)


@pytest.mark.parametrize("kernel", KERNELS)
def test_attached_kernel_stopped_is_not_responding_and_killed_is_dead(kernel: str) -> None:
    """Not our process: the heartbeat port tells a stopped kernel from a dead one."""

    async def scenario(reaper: Reaper) -> None:
        async with watched(kernel, reaper, attached=True) as w:
            w.signal(signal.SIGSTOP)
            try:
                assert await w.next_event() == HeartbeatLost("does not answer its heartbeat")
            finally:
                w.signal(signal.SIGCONT)
            assert await w.next_event() == HeartbeatBack()
            w.signal(signal.SIGKILL)
            assert await w.next_event() == VANISHED
            assert w.events.empty()

    run(scenario, timeout=60)


def test_attached_kernel_that_comes_back_on_its_ports_is_reported_back() -> None:
    """Its owner may restart an attached kernel on the same ports: death is not final."""

    async def scenario(reaper: Reaper) -> None:
        async with watched("loom", reaper, attached=True) as w:
            w.signal(signal.SIGKILL)
            assert await w.next_event() == VANISHED
            await w.manager.restart(now=True)  # a new kernel on the same ports
            new_pid = reaper.track_manager(w.manager)
            assert new_pid != w.pid
            assert await w.next_event() == HeartbeatBack()

    run(scenario, timeout=60)


def test_own_kernel_stopped_is_not_responding_and_its_exit_is_reported_at_once() -> None:
    """Our process: /proc says it is stopped; its pidfd says it exited, and how."""

    async def scenario(reaper: Reaper) -> None:
        async with watched("loom", reaper, attached=False) as w:
            w.signal(signal.SIGSTOP)
            try:
                assert await w.next_event() == HeartbeatLost("is stopped (SIGSTOP?)")
            finally:
                w.signal(signal.SIGCONT)
            assert await w.next_event() == HeartbeatBack()
            w.signal(signal.SIGKILL)
            # From the pidfd, with the status: not from the heartbeat, which is slower.
            assert await w.next_event() == KernelExited("was killed by SIGKILL", -9)

    run(scenario, timeout=60)


def test_an_exit_of_a_process_no_longer_watched_is_not_reported() -> None:
    """A restart: the owner points the watcher away first, then at the new process."""

    async def scenario(reaper: Reaper) -> None:
        async with watched("loom", reaper, attached=False) as w:
            w.watcher.watch_process(None)
            await w.manager.restart(now=True)  # the old kernel dies of SIGTERM, unreported
            new_pid = reaper.track_manager(w.manager)
            w.watcher.watch_process(w.manager.process)
            os.kill(new_pid, signal.SIGKILL)
            assert await w.next_event() == KernelExited("was killed by SIGKILL", -9)
            assert w.events.empty()

    run(scenario, timeout=60)
