"""How much a kernel's sockets may hold for their peers: settings, defaults, parsing.

Anyone who can reach a kernel's ports can send to them; the key only decides what the
kernel *accepts*, after the bytes are in its memory. libzmq queues what arrives until the
kernel reads it, and the kernel reads shell only between cells and stdin only during
``input()``, so without limits junk sent there (no key needed) piled up without bound
(issue 15: 400 MB sent meant +401 MB, held after the peer left). ZeroMQ offers two
bounds, both per connection:

- a *receive high-water mark*: once a peer has this many whole messages queued, libzmq
  stops reading its connection. Nothing is dropped: the peer's own sends wait (TCP flow
  control), so a legitimate client that pipelines requests is merely slowed to the
  kernel's pace;
- a *maximum message size* (``ZMQ_MAXMSGSIZE``, checked per frame): a peer that sends a
  larger frame is disconnected and its message is lost. So the default must allow every
  legitimate message: an engine receives 100 MB arrays pushed in one buffer frame.

What one connection can make the kernel hold is then about (high-water mark + 1) x
maximum size on shell, and much less on the other sockets (their limits are fixed and
small: no legitimate message there is large).

Settings (environment variables of the kernel or engine process; sizes take a ``K``,
``M`` or ``G`` suffix, powers of 1024; ``0`` means no limit):

==========================  ============  ==================================================
``LOOM_MAX_MESSAGE_SIZE``   ``128M``      largest frame accepted on shell (control and
                                          stdin: the smaller of this and 16 MiB)
``LOOM_RECEIVE_HWM``        ``16``        messages each peer may have queued on shell,
                                          control, stdin and iopub (subscriptions)
``LOOM_IOPUB_QUEUE_BYTES``  ``512M``      iopub output held for one subscriber that does
                                          not read (see ``iopub_sndhwm``)
``LOOM_IOPUB_QUEUE``        ``100000``    the same, in messages
==========================  ============  ==================================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "CONTROL_MAX_MESSAGE_SIZE",
    "HB_MAX_MESSAGE_SIZE",
    "HB_SNDHWM",
    "IOPUB_MAX_SUBSCRIPTION",
    "MAX_STREAM_MESSAGE_BYTES",
    "SocketLimits",
    "SocketLimitsError",
    "parse_size",
]

#: Control and stdin carry small requests and typed answers: never more than this.
CONTROL_MAX_MESSAGE_SIZE = 16 << 20
#: Heartbeat pings are a few bytes.
HB_MAX_MESSAGE_SIZE = 64 << 10
#: iopub receives only subscriptions, and libzmq keeps every distinct topic in a trie
#: that costs about 50 bytes of memory per byte of topic (measured on a kernel: 10,000
#: topics of 1,000 bytes, 10 MB sent, cost +460 MiB): topics are kept short. Jupyter clients
#: subscribe to the empty topic; ipykernel's topics are under 100 bytes.
IOPUB_MAX_SUBSCRIPTION = 256
#: Echoes the heartbeat holds for a peer that pings without reading: they are dropped
#: beyond this (a reading client never has more than a few pings in flight).
HB_SNDHWM = 100
#: The largest stream message the kernel publishes (its I/O thread splits larger ones),
#: which turns the iopub byte budget into a high-water mark.
MAX_STREAM_MESSAGE_BYTES = 64 << 10

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_SIZE = re.compile(r"(\d+)\s*([KMG]?)(?:I?B)?", re.IGNORECASE)


class SocketLimitsError(ValueError):
    """A limit setting could not be read; the message names the variable and the value."""


def parse_size(text: str) -> int:
    """Bytes in ``text`` (``"128M"``, ``"64KiB"``, ``"1048576"``); 0 means unlimited.

    Raises :class:`ValueError` saying what was expected.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected a size such as 128M, 1G or 0 (no limit), got {text!r}")
    return int(match[1]) * _UNITS[match[2].upper()]


@dataclass(frozen=True, slots=True)
class SocketLimits:
    """The limits :func:`~kernel.transport.open_kernel_sockets` applies; 0 means none."""

    max_message_size: int = 128 << 20
    receive_hwm: int = 16
    iopub_queue_bytes: int = 512 << 20
    iopub_queue_messages: int = 100_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SocketLimits:
        """The defaults, overridden by the ``LOOM_*`` variables set in ``environ``.

        Raises :class:`SocketLimitsError` for a value that is not a size or count.
        """
        values: dict[str, int] = {}
        for name, field, parse in (
            ("LOOM_MAX_MESSAGE_SIZE", "max_message_size", parse_size),
            ("LOOM_RECEIVE_HWM", "receive_hwm", _parse_count),
            ("LOOM_IOPUB_QUEUE_BYTES", "iopub_queue_bytes", parse_size),
            ("LOOM_IOPUB_QUEUE", "iopub_queue_messages", _parse_count),
        ):
            text = environ.get(name, "").strip()
            if not text:
                continue
            try:
                values[field] = parse(text)
            except ValueError as exc:
                raise SocketLimitsError(f"{name}: {exc}") from None
        return cls(**values)

    @property
    def control_max_message_size(self) -> int:
        """The frame limit of control and stdin: the shell limit, at most 16 MiB."""
        if self.max_message_size == 0:
            return CONTROL_MAX_MESSAGE_SIZE
        return min(self.max_message_size, CONTROL_MAX_MESSAGE_SIZE)

    @property
    def iopub_sndhwm(self) -> int:
        """Messages iopub holds per subscriber: the count limit, and no more than the byte
        budget fits of the largest stream messages. (Rich outputs larger than those, such
        as images, can weigh more than their share: the budget is exact for stream text.)
        """
        by_bytes = self.iopub_queue_bytes // MAX_STREAM_MESSAGE_BYTES
        limits = [n for n in (self.iopub_queue_messages, by_bytes) if n > 0]
        if self.iopub_queue_bytes and not by_bytes:
            limits.append(1)  # a budget smaller than one message still holds one
        return min(limits) if limits else 0


def _parse_count(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"expected a whole number (0: no limit), got {text!r}")
    return int(text)
