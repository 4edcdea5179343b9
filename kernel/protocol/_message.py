"""Jupyter messages as plain data (messaging spec, "General Message Format").

A :class:`Message` holds the four JSON dictionaries of the wire format plus
binary buffers. Headers stay dictionaries so that keys added by newer minor
versions of the protocol survive a round trip untouched.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["PROTOCOL_VERSION", "JSONDict", "Message", "new_id", "utc_now_iso"]

#: The messaging protocol version this implementation speaks.
PROTOCOL_VERSION = "5.5"

JSONDict = dict[str, Any]

_USERNAME = os.environ.get("USER") or os.environ.get("USERNAME") or "username"


def new_id() -> str:
    """A fresh message or session id (a UUID4 hex string, as jupyter_client uses)."""
    return uuid.uuid4().hex


def utc_now_iso() -> str:
    """The current time in the ISO 8601 form the spec asks for, with an explicit UTC offset."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Message:
    """One Jupyter message.

    ``header`` always has ``msg_id``, ``msg_type``, ``session``, ``username``,
    ``date`` and ``version`` once built by :meth:`create` or parsed from the wire.
    ``parent_header`` is ``{}`` for messages that answer nothing.
    """

    header: JSONDict
    parent_header: JSONDict = field(default_factory=dict)
    metadata: JSONDict = field(default_factory=dict)
    content: JSONDict = field(default_factory=dict)
    buffers: list[bytes] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        msg_type: str,
        content: JSONDict | None = None,
        *,
        session: str,
        parent: Message | JSONDict | None = None,
        metadata: JSONDict | None = None,
        buffers: list[bytes] | None = None,
        username: str = _USERNAME,
        msg_id: str | None = None,
    ) -> Message:
        """Build a message; ``parent`` may be the message it answers or its header."""
        header: JSONDict = {
            "msg_id": msg_id or new_id(),
            "msg_type": msg_type,
            "username": username,
            "session": session,
            "date": utc_now_iso(),
            "version": PROTOCOL_VERSION,
        }
        if parent is None:
            parent_header: JSONDict = {}
        elif isinstance(parent, Message):
            parent_header = parent.header
        else:
            parent_header = parent
        return cls(header, parent_header, metadata or {}, content or {}, buffers or [])

    @property
    def msg_type(self) -> str:
        return str(self.header["msg_type"])

    @property
    def msg_id(self) -> str:
        return str(self.header["msg_id"])

    @property
    def parent_id(self) -> str | None:
        """The ``msg_id`` of the request this message answers, or ``None``."""
        value = self.parent_header.get("msg_id")
        return value if isinstance(value, str) else None
