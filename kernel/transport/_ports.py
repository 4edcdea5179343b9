"""Binding a kernel's five sockets: the server side of a :class:`ConnectionInfo`.

Ports given as 0 are chosen by the OS *while binding* (``bind_to_random_port``), so no
other process can take a port between choosing and binding it (ipykernel's race). The
returned :class:`KernelSockets` carries the info with the ports actually bound, which is
what a connection file, or an engine's registration with its controller, announces.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import zmq

from kernel.protocol import CHANNELS, ConnectionInfo

__all__ = ["IOPUB_SNDHWM", "KernelSockets", "open_kernel_sockets"]

#: Enough buffered iopub messages that a client reading slowly through an
#: output flood loses nothing (stream text is batched into large messages).
IOPUB_SNDHWM = 100_000

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

    def __getitem__(self, channel: str) -> zmq.Socket[bytes]:
        return self.sockets[channel]

    def close(self, linger: int = 200) -> None:
        """Close every socket; queued messages get ``linger`` ms to leave."""
        for sock in self.sockets.values():
            sock.close(linger=linger)


def open_kernel_sockets(
    info: ConnectionInfo, ctx: zmq.Context[zmq.Socket[bytes]] | None = None
) -> KernelSockets:
    """Create and bind the five kernel sockets on ``info``'s address.

    Raises :class:`zmq.ZMQError` if a given port cannot be bound (in use, bad address);
    the sockets created so far are closed first.
    """
    ctx = ctx or zmq.Context.instance()
    sockets = {channel: zmq.Socket(ctx, _SOCKET_TYPES[channel]) for channel in CHANNELS}
    try:
        _configure(sockets)
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
    return KernelSockets(bound, sockets)


def _configure(sockets: dict[str, zmq.Socket[bytes]]) -> None:
    sockets["iopub"].setsockopt(zmq.XPUB_VERBOSE, 1)
    sockets["iopub"].sndhwm = IOPUB_SNDHWM
    for name, sock in sockets.items():
        sock.linger = 1000
        if name != "iopub":
            # ROUTER drops replies that exceed the high-water mark; replies are
            # small and bounded by what clients asked, so never drop them.
            sock.sndhwm = 0
            sock.rcvhwm = 0


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
