"""The client side of a cluster: ``Client``, its views and ``AsyncResult`` (no threads)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = ["AsyncResult", "Client", "DirectView", "ExecuteReply", "LoadBalancedView"]

_EXPORTS = {
    "AsyncResult": "._asyncresult",
    "ExecuteReply": "._asyncresult",
    "Client": "._pool_client",
    "DirectView": "._views",
    "LoadBalancedView": "._views",
}

if TYPE_CHECKING:
    from ._asyncresult import AsyncResult, ExecuteReply
    from ._pool_client import Client
    from ._views import DirectView, LoadBalancedView

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
