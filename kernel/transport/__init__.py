"""The ZeroMQ seam shared by the client side and the kernel server.

``MessageSocket`` is an asyncio socket that speaks :class:`~kernel.protocol.Session` frames;
``RateLimitedLog`` keeps what peers send wrong from flooding the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__all__ = [
    "KernelSockets",
    "MessageSocket",
    "RateLimitedLog",
    "SocketLimits",
    "SocketLimitsError",
    "open_kernel_sockets",
    "shared_context",
]

_EXPORTS = {
    "KernelSockets": "._ports",
    "open_kernel_sockets": "._ports",
    "MessageSocket": "._socket",
    "shared_context": "._socket",
    "RateLimitedLog": "._ratelimit",
    "SocketLimits": "._limits",
    "SocketLimitsError": "._limits",
}

if TYPE_CHECKING:
    from ._limits import SocketLimits, SocketLimitsError
    from ._ports import KernelSockets, open_kernel_sockets
    from ._ratelimit import RateLimitedLog
    from ._socket import MessageSocket, shared_context


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
