"""Whether a controller's sockets use CurveZMQ, and turning it on for them.

Bound to loopback or ipc, a cluster is private to its user already (owner-only files
and directories, every frame signed), and Curve would only cost time. Bound anywhere
else, other machines can reach the ports: Curve is on unless the user asked for
plaintext explicitly (``--insecure-plaintext``, ``Cluster(curve=False)``), and then a
warning says what that exposes. ``--curve`` (``Cluster(curve=True)``) forces it on, on
loopback too (the benchmark compares both on one address).

The ZAP handler that enforces the allow-list is answered on the controller's own asyncio
loop (a reader on its descriptor): the controller has no thread, and needs none.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import zmq

from kernel.protocol import CurveKeys, is_private_address
from kernel.transport._curve import ZapHandler, serve_curve, zap_handler

__all__ = ["plaintext_warning", "serve_sockets_with_curve", "wants_curve"]

log = logging.getLogger("loom.controller")


def wants_curve(transport: str, ip: str, curve: bool | None) -> bool:
    """Curve for a controller on ``transport``/``ip``: ``curve`` if given, else on
    exactly when the address is not private to this machine."""
    if curve is not None:
        return curve and transport == "tcp"  # ipc: the 0700 directory admits only us
    return not is_private_address(transport, ip)


def plaintext_warning(transport: str, ip: str, curve: bool) -> str | None:
    """The warning a plaintext cluster reachable from other machines prints, or None."""
    if curve or is_private_address(transport, ip):
        return None
    return (
        f"loom controller: WARNING: --insecure-plaintext on {ip}: code, data and results "
        "travel unencrypted, and anyone who can reach these ports can try to connect "
        "(every message is still signed with the cluster's key)"
    )


def serve_sockets_with_curve(
    keys: CurveKeys, sockets: list[zmq.Socket[bytes]], ctx: zmq.Context[zmq.Socket[bytes]]
) -> ZapHandler:
    """Make ``sockets`` (not yet bound) Curve servers admitting ``keys``' client key; the
    context's ZAP handler is bound first and answered on the running loop."""
    zap = zap_handler(ctx)
    zap.allow(keys)
    loop = asyncio.get_running_loop()
    loop.add_reader(zap.fd, zap.answer)
    # The descriptor is edge-triggered: answer what may have queued before the reader.
    loop.call_soon(zap.answer)
    for sock in sockets:
        serve_curve(sock, keys)
    return zap


def context_of(sock: zmq.Socket[bytes]) -> zmq.Context[zmq.Socket[bytes]]:
    return cast("zmq.Context[zmq.Socket[bytes]]", sock.context)
