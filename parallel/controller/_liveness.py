"""How the hub tells a dead engine from a live one: heartbeat timeout and connection loss.

Theory of operation
-------------------
Two signals, because a death and a hang look different on the wire:

* **The heartbeat** (``kernel.client.HeartbeatMonitor``) catches everything, hangs
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

import ipaddress
from collections.abc import Callable

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from kernel.transport import shared_context

__all__ = [
    "LOCAL_HEARTBEAT_TIMEOUT",
    "REMOTE_HEARTBEAT_TIMEOUT",
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
