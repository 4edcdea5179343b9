"""The Jupyter kernel messaging protocol, without I/O.

Pure standard library: no zmq, no asyncio. Shared by ``kernel``, ``shell``
and ``parallel``. See ``docs/protocol.md`` for what is implemented.
"""

from __future__ import annotations

from ._connection import CHANNELS, ConnectionInfo, runtime_dir
from ._errors import (
    ConnectionFileError,
    MalformedMessage,
    ProtocolError,
    ReplayedMessage,
    SignatureError,
)
from ._message import PROTOCOL_VERSION, JSONDict, Message, new_id, utc_now_iso
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
    "ReplyReceived",
    "RequestFinished",
    "RequestTracker",
    "Session",
    "SignatureError",
    "Signer",
    "TrackerEvent",
    "UnexpectedReply",
    "new_id",
    "runtime_dir",
    "utc_now_iso",
]
