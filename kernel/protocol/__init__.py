"""The Jupyter kernel messaging protocol, without I/O.

Pure standard library: no zmq, no asyncio. Shared by ``kernel``, ``shell``
and ``parallel``. See ``docs/protocol.md`` for what is implemented.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

# Connection files and errors are loaded at once; messages, sessions and the
# tracker on first use (PEP 562): launching a kernel needs only the former, and
# the console launches its kernel before anything else (see shell.console._startup).
from ._connection import (
    CHANNELS,
    ConnectionInfo,
    read_json_object,
    runtime_dir,
    write_private_json,
)
from ._curve_keys import CurveKeys, is_private_address
from ._errors import (
    ConnectionFileError,
    MalformedMessage,
    ProtocolError,
    ReplayedMessage,
    SignatureError,
)

_LAZY = {
    "JSONDict": "._message",
    "Message": "._message",
    "PROTOCOL_VERSION": "._message",
    "new_id": "._message",
    "utc_now_iso": "._message",
    "DEFAULT_MAX_JSON_FRAME": "._session",
    "DELIMITER": "._session",
    "Received": "._session",
    "Session": "._session",
    "Reply": "._replies",
    "error_content": "._replies",
    "reply_message": "._replies",
    "reply_type": "._replies",
    "status_content": "._replies",
    "unknown_request_reply": "._replies",
    "Signer": "._signing",
    "ForeignOutput": "._tracker",
    "InputRequested": "._tracker",
    "KernelStatus": "._tracker",
    "OutputReceived": "._tracker",
    "ReplyReceived": "._tracker",
    "RequestFinished": "._tracker",
    "RequestTracker": "._tracker",
    "TrackerEvent": "._tracker",
    "UnexpectedReply": "._tracker",
}

if TYPE_CHECKING:
    from ._message import PROTOCOL_VERSION, JSONDict, Message, new_id, utc_now_iso
    from ._replies import (
        Reply,
        error_content,
        reply_message,
        reply_type,
        status_content,
        unknown_request_reply,
    )
    from ._session import DEFAULT_MAX_JSON_FRAME, DELIMITER, Received, Session
    from ._signing import Signer
    from ._tracker import (
        ForeignOutput,
        InputRequested,
        KernelStatus,
        OutputReceived,
        ReplyReceived,
        RequestFinished,
        RequestTracker,
        TrackerEvent,
        UnexpectedReply,
    )

__all__ = [
    "CHANNELS",
    "DEFAULT_MAX_JSON_FRAME",
    "DELIMITER",
    "PROTOCOL_VERSION",
    "ConnectionFileError",
    "ConnectionInfo",
    "CurveKeys",
    "ForeignOutput",
    "InputRequested",
    "JSONDict",
    "KernelStatus",
    "MalformedMessage",
    "Message",
    "OutputReceived",
    "ProtocolError",
    "Received",
    "ReplayedMessage",
    "Reply",
    "ReplyReceived",
    "RequestFinished",
    "RequestTracker",
    "Session",
    "SignatureError",
    "Signer",
    "TrackerEvent",
    "UnexpectedReply",
    "error_content",
    "is_private_address",
    "new_id",
    "read_json_object",
    "reply_message",
    "reply_type",
    "runtime_dir",
    "status_content",
    "unknown_request_reply",
    "utc_now_iso",
    "write_private_json",
]


__getattr__ = lazy_exports(__name__, _LAZY, globals())
