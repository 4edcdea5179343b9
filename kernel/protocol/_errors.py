"""Exceptions raised by the pure protocol layer.

Every problem with bytes that arrived from a peer is a :class:`ProtocolError`.
Receivers catch it, log it (rate-limited) and drop the message; it never
propagates out of a socket reader.
"""

from __future__ import annotations

__all__ = [
    "ConnectionFileError",
    "MalformedMessage",
    "ProtocolError",
    "ReplayedMessage",
    "SignatureError",
]


class ProtocolError(Exception):
    """Bytes from a peer do not form a valid Jupyter message."""


class MalformedMessage(ProtocolError):
    """The frame list or one of its JSON frames is not what the spec requires."""


class SignatureError(ProtocolError):
    """The HMAC signature is missing, wrong, or the scheme is unknown."""


class ReplayedMessage(SignatureError):
    """A correctly signed message whose signature was already seen (a replay)."""


class ConnectionFileError(ValueError):
    """A connection file is missing, unreadable, or lacks required fields."""
