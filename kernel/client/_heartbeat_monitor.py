"""Heartbeat monitoring (messaging spec, "Heartbeat for kernels").

The kernel's heartbeat socket echoes whatever it receives. We ping once per
``interval`` and call the kernel *unresponsive* once a ping has gone unanswered
for ``grace`` seconds. An echo ends that state. Only the owner knows whether an
unresponsive kernel is dead or merely stopped (it may have the PID), so the
monitor reports transitions and decides nothing else.

The clock measures the kernel, not our own loop. The rule is "the oldest
unanswered ping is ``grace`` old", not "no echo for ``grace``", and echoes that
are already queued are read before every verdict. So while the console's loop is
blocked (a pager or ``%edit`` in the foreground, a paused terminal), a healthy
kernel's echoes wait in libzmq's queue and are counted on resume: no false
"not responding". A kernel that really stopped meanwhile has left a ping
unanswered since before the block, and is reported at once. A ping libzmq refuses
to queue (no connection ready: ``IMMEDIATE``) is not a ping: it is retried before any
verdict, and only refusals that last ``grace`` count as silence, so a refusal just
before our loop blocked cannot age into a false alarm either (it did: a paused
terminal). :class:`PingClock` is that rule, without I/O.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import cast

import zmq
import zmq.asyncio

from kernel.protocol import CurveKeys
from kernel.transport._curve import connect_curve
from kernel.transport._socket import shared_context

__all__ = ["HeartbeatMonitor", "PingClock", "wait_for_heartbeat"]


class PingClock:
    """Which pings are unanswered, and since when (pure; times are given).

    An echo answers its own ping and every ping sent before it (the kernel was
    alive after they were sent). At most ``limit`` pings are remembered: the
    oldest are forgotten, which can only shorten a silence already far past any
    sensible ``grace``.
    """

    def __init__(self, grace: float, *, limit: int = 64) -> None:
        self.grace = grace
        self._limit = limit
        self._pending: dict[bytes, float] = {}  # token -> sent at; oldest first
        #: Since when every attempt to send a ping was refused (None: the last one went).
        self._refused_since: float | None = None

    @property
    def refused(self) -> bool:
        """Whether the last attempt to ping was refused (retry it before a verdict)."""
        return self._refused_since is not None

    def pinged(self, token: bytes, now: float) -> None:
        """A ping was sent."""
        self._refused_since = None
        self._pending[token] = now
        while len(self._pending) > self._limit:
            del self._pending[next(iter(self._pending))]

    def refused_at(self, now: float) -> None:
        """A ping could not be sent (a peer that is not connected is silent too, once
        that has lasted ``grace``)."""
        if self._refused_since is None:
            self._refused_since = now

    def echoed(self, token: bytes) -> bool:
        """An echo came; True if it answered a ping we are waiting for."""
        if token not in self._pending:
            return False  # not ours (or long forgotten): no evidence about now
        for sent in list(self._pending):
            del self._pending[sent]
            if sent == token:
                break
        return True

    def silence(self, now: float) -> float:
        """Seconds the oldest unanswered ping has waited, or since pings are refused
        (0: neither)."""
        oldest = [next(iter(self._pending.values()))] if self._pending else []
        if self._refused_since is not None:
            oldest.append(self._refused_since)
        return max(0.0, now - min(oldest)) if oldest else 0.0

    def is_silent(self, now: float) -> bool:
        return self.silence(now) >= self.grace


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
        curve: CurveKeys | None = None,
    ) -> None:
        self.url = url
        self.curve = curve
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
        if self.curve is not None:
            connect_curve(sock, self.curve)
        sock.connect(self.url)
        clock = PingClock(self.grace)
        try:
            while True:
                await self._ping(sock, clock)
                deadline = time.monotonic() + self.interval
                while (remaining := deadline - time.monotonic()) > 0:
                    if not await sock.poll(remaining * 1000):
                        break
                    self._read_echoes(sock, clock)
                # The verdict counts what is queued already: our loop may have been
                # blocked past the deadline while the echoes came (module docstring).
                self._read_echoes(sock, clock)
                if clock.refused:  # retried now: our loop may have been blocked since
                    await self._ping(sock, clock)
                self._set(not clock.is_silent(time.monotonic()))
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        finally:
            sock.close(linger=0)

    async def _ping(self, sock: zmq.asyncio.Socket, clock: PingClock) -> None:
        token = os.urandom(8)
        try:
            await sock.send_multipart([b"", token], flags=zmq.DONTWAIT)
        except zmq.Again:  # IMMEDIATE: no connection ready to take it
            clock.refused_at(time.monotonic())
        else:
            clock.pinged(token, time.monotonic())

    def _read_echoes(self, sock: zmq.asyncio.Socket, clock: PingClock) -> None:
        """Take every echo already received (never waits); an answer means responsive."""
        while True:
            try:
                # A zmq.asyncio socket's NOBLOCK receive is a future already done
                # (a result, or zmq.Again): no await, so nothing else runs meanwhile.
                done = cast("asyncio.Future[list[bytes]]", sock.recv_multipart(zmq.NOBLOCK))
                frames = done.result()
            except zmq.Again:
                return
            if clock.echoed(frames[-1]):
                self._set(True)

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
