"""Binding a kernel's five sockets: the server side of a :class:`ConnectionInfo`.

Ports given as 0 are chosen by the OS *while binding* (``bind_to_random_port``), so no
other process can take a port between choosing and binding it (ipykernel's race). The
returned :class:`KernelSockets` carries the info with the ports actually bound, which is
what a connection file, or an engine's registration with its controller, announces.

Every socket is bound with the limits of :class:`~kernel.transport._limits.SocketLimits`
(from the environment unless given): what a peer, authenticated or not, can make the
kernel hold is bounded per connection (the ``_limits`` module says how and why).

When ``info`` carries Curve keys with the server's secret, every socket is a Curve server
and the context's ZAP handler (``_curve``) is bound first and returned in
:attr:`KernelSockets.zap`: whoever serves the kernel (its ``loom-io`` thread) answers it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import zmq

from kernel.protocol import CHANNELS, ConnectionInfo

from ._curve import ZapHandler, serve_curve, zap_handler
from ._limits import HB_MAX_MESSAGE_SIZE, HB_SNDHWM, IOPUB_MAX_SUBSCRIPTION, SocketLimits

__all__ = ["KernelSockets", "SocketLimits", "open_kernel_sockets"]

#: What Curve adds around a frame, and more: its handshake commands (INITIATE with the
#: socket's metadata) must fit too.
CURVE_OVERHEAD = 1024

_SOCKET_TYPES = {
    "shell": zmq.ROUTER,
    "control": zmq.ROUTER,
    "stdin": zmq.ROUTER,
    "iopub": zmq.XPUB,
    "hb": zmq.ROUTER,
}


@dataclass(frozen=True, slots=True)
class KernelSockets:
    """A kernel's bound sockets, by channel name, and the info that reaches them."""

    info: ConnectionInfo
    sockets: dict[str, zmq.Socket[bytes]]
    #: The ZAP handler admitting Curve clients (None: plaintext); its owner answers it.
    zap: ZapHandler | None = None

    def __getitem__(self, channel: str) -> zmq.Socket[bytes]:
        return self.sockets[channel]

    def close(self, linger: int = 200) -> None:
        """Close every socket; queued messages get ``linger`` ms to leave."""
        for sock in self.sockets.values():
            sock.close(linger=linger)


def open_kernel_sockets(
    info: ConnectionInfo,
    ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
    *,
    limits: SocketLimits | None = None,
) -> KernelSockets:
    """Create and bind the five kernel sockets on ``info``'s address, with ``limits``
    (default: :meth:`SocketLimits.from_env`).

    Raises :class:`~kernel.transport._limits.SocketLimitsError` (a ``ValueError``) for an
    unreadable ``LOOM_*`` limit, before any socket exists, and :class:`zmq.ZMQError` if a
    given port cannot be bound (in use, bad address); the sockets created so far are
    closed first.
    """
    limits = limits if limits is not None else SocketLimits.from_env()
    ctx = ctx or zmq.Context.instance()
    zap = None
    if info.curve is not None:
        if not info.curve.can_serve:
            raise ValueError("serving Curve needs the server's secret key")
        zap = zap_handler(ctx)  # bound before any Curve socket: libzmq admits all without
        zap.allow(info.curve)
    sockets = {channel: zmq.Socket(ctx, _SOCKET_TYPES[channel]) for channel in CHANNELS}
    try:
        _configure(sockets, limits)
        if info.curve is not None:
            for sock in sockets.values():
                serve_curve(sock, info.curve)
                # libzmq applies the frame limit to Curve's handshake (INITIATE is over
                # 256 bytes: iopub's limit) and to each frame as encrypted (a few dozen
                # bytes more): the limits stay about the messages, not the envelope.
                _set_max_message_size(sock, int(sock.getsockopt(zmq.MAXMSGSIZE)), CURVE_OVERHEAD)
        ports = {
            channel: _bind(sockets[channel], info, channel, index + 1)
            for index, channel in enumerate(CHANNELS)
        }
    except zmq.ZMQError:
        for sock in sockets.values():
            sock.close(linger=0)
        raise
    bound = dataclasses.replace(
        info,
        shell_port=ports["shell"],
        iopub_port=ports["iopub"],
        stdin_port=ports["stdin"],
        control_port=ports["control"],
        hb_port=ports["hb"],
    )
    return KernelSockets(bound, sockets, zap)


def _configure(sockets: dict[str, zmq.Socket[bytes]], limits: SocketLimits) -> None:
    for sock in sockets.values():
        sock.linger = 1000
    # Requests: a peer with receive_hwm messages queued is not read until the kernel
    # catches up (TCP flow control; nothing is dropped), and no frame may exceed the
    # maximum size. Replies: ROUTER drops what exceeds a send high-water mark, and a
    # lost reply hangs its request, so they queue without one; what they hold is
    # bounded by what the client itself asked for.
    for name in ("shell", "control", "stdin"):
        sock = sockets[name]
        sock.sndhwm = 0
        sock.rcvhwm = limits.receive_hwm
        size = limits.max_message_size if name == "shell" else limits.control_max_message_size
        _set_max_message_size(sock, size)
    # iopub: only subscriptions come in, kept short (see IOPUB_MAX_SUBSCRIPTION). Out,
    # a subscriber that stops reading may cost up to the byte budget; beyond it XPUB
    # drops *its* messages, never the others'.
    iopub = sockets["iopub"]
    iopub.setsockopt(zmq.XPUB_VERBOSE, 1)
    iopub.sndhwm = limits.iopub_sndhwm
    iopub.rcvhwm = limits.receive_hwm
    _set_max_message_size(iopub, IOPUB_MAX_SUBSCRIPTION)
    # The heartbeat echoes whatever it receives (zmq.proxy), at once; echoes for a peer
    # that does not read them are dropped beyond HB_SNDHWM, which only that peer misses.
    hb = sockets["hb"]
    hb.sndhwm = HB_SNDHWM
    hb.rcvhwm = HB_SNDHWM
    _set_max_message_size(hb, HB_MAX_MESSAGE_SIZE)


def _set_max_message_size(sock: zmq.Socket[bytes], size: int, margin: int = 0) -> None:
    sock.setsockopt(zmq.MAXMSGSIZE, size + margin if size > 0 else -1)  # -1: no limit


def _bind(sock: zmq.Socket[bytes], info: ConnectionInfo, channel: str, number: int) -> int:
    port = info.port(channel)
    if info.transport == "ipc":
        # An ipc "port" only tells the five socket files (``<ip>-<port>``) apart.
        port = port or number
        sock.bind(f"ipc://{info.ip}-{port}")
        return port
    if ":" in info.ip:
        sock.ipv6 = True
    if port:
        sock.bind(info.url(channel))
        return port
    return sock.bind_to_random_port(info.tcp_host)
