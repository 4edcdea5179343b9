"""How the hub tells a dead engine from a live one: heartbeat timeout and connection loss.

Theory of operation
-------------------
Two signals, because a death and a hang look different on the wire:

* **The heartbeat** (:class:`Heartbeats`: ``kernel.client``'s ``PingClock`` rule for every
  engine, from one task of the hub's loop) catches everything, hangs
  (SIGSTOP, a stuck GIL-free loop is not one: libzmq echoes) and partitions included,
  but only after ``timeout`` seconds of silence. The timeout is a trade: shorter finds
  a dead engine sooner, longer survives a slow network or a loaded machine without a
  false alarm. :func:`heartbeat_timeout` picks 3 s where every hop is local (ipc, or
  engines on a loopback address: one machine, issue 10's "within about 3 s") and 10 s
  otherwise (issue 13: a busy switch or a VM pause must not lose an engine and its
  tasks). ``loom cluster start --heartbeat-timeout S`` / ``Cluster(heartbeat_timeout=S)``
  override both.
* **Connection loss**: a process that *exits* has its sockets closed by its kernel, and
  the hub's connection to its heartbeat port reports ``DISCONNECTED`` at once, well
  before any timeout. :func:`watch_connection` turns that into a loss. This matters for
  engines the hub did not start (remote, ``loom engine``): for its own children the
  controller already has a pidfd. A hang or a partition closes nothing, so only the
  heartbeat catches those. A disconnect counts only after a completed handshake (so a
  peer that never spoke, or refused our security mechanism, is never declared dead by
  it), and only once (a reconnect is libzmq's business; the engine is gone for us).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from kernel.client._heartbeat_monitor import PingClock
from kernel.protocol import CurveKeys
from kernel.transport import shared_context
from kernel.transport._curve import connect_curve

__all__ = [
    "LOCAL_HEARTBEAT_TIMEOUT",
    "REMOTE_HEARTBEAT_TIMEOUT",
    "Heartbeats",
    "heartbeat_timeout",
    "watch_connection",
]

#: Seconds of heartbeat silence after which an engine on this machine is lost.
LOCAL_HEARTBEAT_TIMEOUT = 3.0
#: The same for an engine reached over a network.
REMOTE_HEARTBEAT_TIMEOUT = 10.0


def heartbeat_timeout(transport: str, address: str, configured: float | None = None) -> float:
    """The heartbeat timeout for an engine at ``address`` (module docstring).

    ``configured`` (seconds, > 0) wins; otherwise ipc and loopback addresses get
    :data:`LOCAL_HEARTBEAT_TIMEOUT`, anything else :data:`REMOTE_HEARTBEAT_TIMEOUT`.
    """
    if configured is not None:
        if not configured > 0:
            raise ValueError(f"the heartbeat timeout must be > 0 seconds, not {configured!r}")
        return float(configured)
    return LOCAL_HEARTBEAT_TIMEOUT if is_local(transport, address) else REMOTE_HEARTBEAT_TIMEOUT


def is_local(transport: str, address: str) -> bool:
    """Whether ``transport``/``address`` stays on this machine (ipc, loopback, localhost)."""
    if transport == "ipc":
        return True
    host = address.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it is another machine


async def watch_connection(
    url: str,
    on_gone: Callable[[], None],
    *,
    context: zmq.asyncio.Context | None = None,
    configure: Callable[[zmq.asyncio.Socket], None] | None = None,
    on_connected: Callable[[], None] | None = None,
) -> None:
    """Connect to ``url`` and call ``on_gone()`` once the connection, once established,
    closes (the peer's process exited); runs until then or until cancelled.

    ``configure`` prepares the socket before it connects (a security mechanism);
    ``on_connected`` is called at each completed handshake. Nothing is ever sent: the
    peer sees an idle connection.
    """
    sock = (context or shared_context()).socket(zmq.DEALER)
    sock.linger = 0
    if configure is not None:
        configure(sock)
    events = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
    monitor = sock.get_monitor_socket(events)
    try:
        sock.connect(url)
        spoke = False
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                spoke = True
                if on_connected is not None:
                    on_connected()
            elif event["event"] == zmq.EVENT_DISCONNECTED and spoke:
                on_gone()
                return
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)


@dataclass(slots=True, eq=False)
class _Beat:
    sock: zmq.Socket[bytes]
    clock: PingClock
    on_silent: Callable[[], None]


class Heartbeats:
    """Every watched engine's heartbeat, from one task: each ``interval`` it reads the
    echoes already queued, gives its verdict and pings again, engine by engine.

    The rule is ``kernel.client.HeartbeatMonitor``'s (``PingClock``: silent once the
    oldest unanswered ping is ``grace`` old, echoes queued while the loop was blocked
    read before the verdict, refused pings retried first), without what that monitor
    does between two pings: it waited for each echo on a ``zmq.asyncio`` poll, to report
    a kernel *responsive again* at once, which the hub never needs (a silent engine is
    lost and forgotten). A monitor per engine cost the controller ~2 ms of CPU a second
    per engine (asyncio pollers and futures per ping: 36 ms a second with 16 idle
    engines); here a ping is a few non-blocking socket calls. ``on_silent`` is called once,
    and the engine is no longer watched then.
    """

    def __init__(self, interval: float, context: zmq.Context[zmq.Socket[bytes]] | None = None):
        self.interval = interval
        self._context = context or shared_context()
        self._beats: dict[int, _Beat] = {}

    def watch(
        self,
        engine: int,
        url: str,
        grace: float,
        on_silent: Callable[[], None],
        curve: CurveKeys | None = None,
    ) -> None:
        """Watch ``engine``'s heartbeat at ``url`` (an engine watched already: anew)."""
        self.unwatch(engine)
        # DEALER, not REQ: a lost ping must not wedge a request/reply state machine.
        # IMMEDIATE: a ping to a vanished peer is refused at once, not queued.
        sock: zmq.Socket[bytes] = zmq.Socket(self._context, zmq.DEALER)
        sock.linger = 0
        sock.setsockopt(zmq.IMMEDIATE, 1)
        if curve is not None:
            connect_curve(sock, curve)
        sock.connect(url)
        self._beats[engine] = _Beat(sock, PingClock(grace), on_silent)

    def unwatch(self, engine: int) -> None:
        beat = self._beats.pop(engine, None)
        if beat is not None:
            beat.sock.close(linger=0)

    @property
    def watched(self) -> frozenset[int]:
        return frozenset(self._beats)

    async def run(self) -> None:
        """Beat every ``interval`` until cancelled; then no socket is left open."""
        try:
            while True:
                self.beat(time.monotonic())
                await asyncio.sleep(self.interval)
        finally:
            self.close()

    def beat(self, now: float) -> None:
        """One round: for each engine, read its echoes, judge it, ping it."""
        for engine, beat in list(self._beats.items()):
            if self._beats.get(engine) is not beat:  # lost meanwhile (an on_silent)
                continue
            _read_echoes(beat)
            if beat.clock.refused:  # retried now: our loop may have been blocked since
                _ping(beat, now)
            if beat.clock.is_silent(now):
                self.unwatch(engine)
                beat.on_silent()
                continue
            _ping(beat, now)

    def close(self) -> None:
        for engine in list(self._beats):
            self.unwatch(engine)


def _ping(beat: _Beat, now: float) -> None:
    token = os.urandom(8)
    try:
        beat.sock.send_multipart([b"", token], flags=zmq.DONTWAIT)
    except zmq.Again:  # IMMEDIATE: no connection ready to take it
        beat.clock.refused_at(now)
    else:
        beat.clock.pinged(token, now)


def _read_echoes(beat: _Beat) -> None:
    """Take every echo already received (never waits)."""
    while True:
        try:
            frames = beat.sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        beat.clock.echoed(frames[-1])
