"""How large a frame the controller's sockets take from a peer, and what follows from it.

Anyone who can reach the hub's port can send to it (on loopback plaintext: anyone on the
host); the key only decides what the hub *accepts*, after the bytes are in its memory.
Without a limit libzmq took frames of any size: 5 junk frames of 200 MB took a
controller from 31 MB to a 231 MB peak (issue 12). ``ZMQ_MAXMSGSIZE`` bounds each frame:
libzmq reads a frame's size before its bytes and drops a connection that announces more,
so an oversize frame costs the controller nothing but the disconnect.

The limit must never cut a legitimate peer off, so every peer knows it: the controller
writes it in the cluster file (``ControllerInfo.max_message_size``), which engines and
clients read anyway. What the hub receives, and why each stays under it:

- engines' record batches: the hub link splits a batch and slims a record that alone is
  too large (``parallel.engine._record_fit``), so no batch frame exceeds
  :func:`record_budget`;
- a client's ``setup_request`` with a pickled function: the client refuses, by name, one
  that does not fit before sending it;
- registrations, pings, connection and shutdown requests, record queries (lists of
  msg_ids) and resubmits: JSON of kilobytes (a query for 100,000 tasks is ~4 MB).

The notification PUB receives only subscriptions (clients subscribe to everything, an
empty topic), and libzmq keeps each topic in a trie at ~50 bytes of memory per byte
(``kernel.transport._limits``): its frames are kept as short as iopub's.

Setting (the controller's environment; a ``K``, ``M`` or ``G`` suffix, ``0`` for none):
``LOOM_HUB_MAX_MESSAGE_SIZE``, 64 MiB by default, at least 1 MiB.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import zmq

from kernel.transport._limits import IOPUB_MAX_SUBSCRIPTION, parse_size
from kernel.transport._ports import CURVE_OVERHEAD

__all__ = [
    "HUB_MAX_MESSAGE_SIZE",
    "HUB_RECEIVE_HWM",
    "MIN_HUB_MESSAGE_SIZE",
    "RECORD_MARGIN",
    "hub_max_message_size",
    "limit_hub_sockets",
    "record_budget",
]

#: The default frame limit: a record batch is ~1 MiB plus one record (a result up to
#: ``LOOM_RECORD_RESULT_LIMIT``, 16 MiB), so this leaves room for larger settings of that,
#: and for setup functions that capture data, while one connection can make the
#: controller hold at most this much at a time.
HUB_MAX_MESSAGE_SIZE = 64 << 20
#: Smaller limits are refused: a record batch must fit its requests' JSON parts.
MIN_HUB_MESSAGE_SIZE = 1 << 20
#: What a record batch leaves of the limit for the frames around its blob (header,
#: signed content: its rows' strings are counted in the budget, the rest is ~1 KiB).
RECORD_MARGIN = 64 << 10

#: Whole messages the hub's ROUTER queues from one peer before it stops reading it: a
#: peer waits for each answer (clients) or sends a few messages a second (engines).
HUB_RECEIVE_HWM = 4

VARIABLE = "LOOM_HUB_MAX_MESSAGE_SIZE"


def hub_max_message_size(environ: Mapping[str, str] = os.environ) -> int:
    """The controller's frame limit in bytes (0: none), from ``LOOM_HUB_MAX_MESSAGE_SIZE``.

    Raises :class:`ValueError` naming the variable for a value that is not a size, or is
    below :data:`MIN_HUB_MESSAGE_SIZE`.
    """
    text = environ.get(VARIABLE, "").strip()
    if not text:
        return HUB_MAX_MESSAGE_SIZE
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise ValueError(f"{VARIABLE}: {exc}") from None
    if 0 < size < MIN_HUB_MESSAGE_SIZE:
        raise ValueError(f"{VARIABLE}: at least 1M (or 0: no limit), got {text!r}")
    return size


def record_budget(limit: int) -> int:
    """The most a record batch's blob (and its rows' strings) may weigh under ``limit``
    (0: no limit, then 0)."""
    return max(limit - RECORD_MARGIN, 0) if limit > 0 else 0


def limit_hub_sockets(
    router: zmq.Socket[bytes], notify: zmq.Socket[bytes], limit: int, curve: bool
) -> None:
    """Set the frame limits on the hub ROUTER (``limit``, 0: none) and the notification
    PUB (subscriptions), and the ROUTER's receive mark; with Curve, its envelope and
    handshake fit on top (as on a kernel's sockets: ``kernel.transport._ports``)."""
    margin = CURVE_OVERHEAD if curve else 0
    # Without a mark libzmq read on while the loop was busy (a commit), queueing frames
    # under the limit without end; with one it stops reading that peer (TCP pushes
    # back, nothing is dropped), so a connection holds about (mark + 1) frames.
    router.rcvhwm = HUB_RECEIVE_HWM
    router.setsockopt(zmq.MAXMSGSIZE, limit + margin if limit > 0 else -1)
    notify.setsockopt(zmq.MAXMSGSIZE, IOPUB_MAX_SUBSCRIPTION + margin)
