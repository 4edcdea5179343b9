"""Heartbeat monitoring (messaging spec, "Heartbeat for kernels").

The kernel's heartbeat socket echoes whatever it receives. We ping once per
``interval`` and call the kernel *unresponsive* once no echo has come back for
``grace`` seconds. An echo ends that state. Only the owner knows whether an
unresponsive kernel is dead or merely stopped (it may have the PID), so the
monitor reports transitions and decides nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable

import zmq
import zmq.asyncio

from kernel.transport._socket import shared_context

__all__ = ["HeartbeatMonitor", "wait_for_heartbeat"]


class HeartbeatMonitor:
    """Pings ``url`` and reports ``on_change(responsive)`` when the answer changes."""

    def __init__(
        self,
        url: str,
        on_change: Callable[[bool], None],
        *,
        interval: float = 0.5,
        grace: float = 2.5,
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        self.url = url
        self.interval = interval
        self.grace = grace
        self.responsive = True
        self._on_change = on_change
        self._context = context or shared_context()

    async def run(self) -> None:
        """Monitor until cancelled."""
        # DEALER, not REQ: a lost ping must not wedge a request/reply state
        # machine. IMMEDIATE makes pings to a vanished peer fail at once
        # instead of queueing up to the high-water mark.
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 0
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.connect(self.url)
        last_echo = time.monotonic()
        try:
            while True:
                token = os.urandom(8)
                with contextlib.suppress(zmq.Again):
                    await sock.send_multipart([b"", token], flags=zmq.DONTWAIT)
                deadline = time.monotonic() + self.interval
                while (remaining := deadline - time.monotonic()) > 0:
                    if not await sock.poll(remaining * 1000):
                        break
                    await sock.recv_multipart()
                    last_echo = time.monotonic()
                    self._set(True)
                if time.monotonic() - last_echo >= self.grace:
                    self._set(False)
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        finally:
            sock.close(linger=0)

    def _set(self, responsive: bool) -> None:
        if responsive != self.responsive:
            self.responsive = responsive
            self._on_change(responsive)


async def wait_for_heartbeat(url: str, *, context: zmq.asyncio.Context | None = None) -> None:
    """Return once the heartbeat at ``url`` has echoed one ping.

    A launcher uses this to learn that a new kernel has bound its ports (ipykernel
    binds the heartbeat last). It never gives up by itself: wrap it in
    ``asyncio.timeout`` and race it against the process's exit.
    """
    sock = (context or shared_context()).socket(zmq.DEALER)
    sock.linger = 0
    # Until the kernel listens, libzmq retries the TCP connect every RECONNECT_IVL
    # ms. Nothing signals "a port started listening", so this retry (inside
    # libzmq) is the one unavoidable poll; 10 ms instead of 100 keeps start fast.
    sock.setsockopt(zmq.RECONNECT_IVL, 10)
    sock.connect(url)
    token = os.urandom(8)
    try:
        # Without IMMEDIATE the ping waits in the pipe until the connection exists.
        await sock.send_multipart([b"", token])
        while (await sock.recv_multipart())[-1] != token:
            pass  # a stale echo cannot happen on a fresh socket, but be exact
    finally:
        sock.close(linger=0)
