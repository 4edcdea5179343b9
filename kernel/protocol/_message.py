"""Jupyter messages as plain data (messaging spec, "General Message Format").

A :class:`Message` holds the four JSON dictionaries of the wire format plus
binary buffers. Headers stay dictionaries so that keys added by newer minor
versions of the protocol survive a round trip untouched.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NO_EXECUTE_INPUT",
    "PROTOCOL_VERSION",
    "UNANNOUNCED",
    "JSONDict",
    "Message",
    "new_id",
    "new_msg_id",
    "utc_now_iso",
]

#: The messaging protocol version this implementation speaks.
PROTOCOL_VERSION = "5.5"

JSONDict = dict[str, Any]

_USERNAME = os.environ.get("USER") or os.environ.get("USERNAME") or "username"


def new_id() -> str:
    """A fresh message or session id (a UUID4 hex string, as jupyter_client uses)."""
    return uuid.uuid4().hex


#: Request metadata key (a Loom extension): ``True`` asks a Loom kernel to publish no
#: ``status: busy``/``idle`` for this request. Only a client that finishes requests by the
#: reply's ``outputs`` count sends it (the engine pool's); every other request is
#: announced as the messaging spec says.
UNANNOUNCED = "loom_unannounced"
#: Request metadata key (a Loom extension): ``True`` asks a Loom kernel to publish no
#: ``execute_input`` for this ``execute_request`` (``%px`` sends it: it never shows the
#: engines' echo of the code it sent, and with 4 engines the echoes were most of what
#: ``%px a=1`` cost over a silent execute). Everything else about the request (execution count,
#: history, results) is unchanged; a kernel that does not know the key ignores it.
NO_EXECUTE_INPUT = "loom_no_execute_input"

#: Message ids are this process's random prefix and a counter (``<uuid4 hex>_<n>``), as
#: jupyter_client's are (``<session>_<pid>_<n>``): unique without a ``uuid4()`` per
#: message, which was a tenth of building one. The spec asks only for uniqueness.
_id_prefix = uuid.uuid4().hex
_id_counter = itertools.count()


def _new_id_prefix() -> None:
    """A forked child (an engine forked by the fork server) gets a prefix of its own."""
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = uuid.uuid4().hex, itertools.count()


os.register_at_fork(after_in_child=_new_id_prefix)


def new_msg_id() -> str:
    """A fresh message id, unique across processes (see ``_id_prefix``)."""
    return f"{_id_prefix}_{next(_id_counter)}"


def made_here(msg_id: str) -> bool:
    """Whether :func:`new_msg_id` of this process made ``msg_id``."""
    return msg_id.startswith(_id_prefix) and msg_id[len(_id_prefix) : len(_id_prefix) + 1] == "_"


#: ``(second, "YYYY-MM-DDTHH:MM:SS")`` of the last stamp: formatting the date once a
#: second and only the microseconds per message is a third of ``datetime.now(UTC)``'s
#: ``isoformat`` (one tuple, replaced whole, so threads never see half an update).
_second_stamp: tuple[int, str] = (-1, "")


def utc_now_iso() -> str:
    """The current time in the ISO 8601 form the spec asks for, with an explicit UTC offset."""
    global _second_stamp
    now = time.time()
    second = int(now)
    stamp = _second_stamp
    if stamp[0] != second:
        stamp = _second_stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{stamp[1]}.{int((now - second) * 1e6):06d}Z"


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
        date: str | None = None,
    ) -> Message:
        """Build a message; ``parent`` may be the message it answers or its header.
        ``date``: its ``utc_now_iso()`` stamp, if the caller took one for several."""
        header: JSONDict = {
            "msg_id": msg_id or new_msg_id(),
            "msg_type": msg_type,
            "username": username,
            "session": session,
            "date": date or utc_now_iso(),
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
