"""Answering a request: the reply a handler returns, and how it becomes a message.

Every request a kernel (or an engine) answers is framed the same way (messaging spec,
"Kernel status"): ``status: busy`` on iopub, the handler, the ``*_reply`` on the socket
the request came in on, ``status: idle``. The drivers (the server's shell loop, the I/O
thread's control loop) own the timing; this module owns what is sent, so they agree:
the reply's type, its content when the handler failed, and buffers (an ``apply_reply``
carries its pickled result in buffers, not in JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._message import JSONDict, Message
from ._session import Session

__all__ = [
    "Reply",
    "error_content",
    "reply_message",
    "reply_type",
    "status_content",
    "unknown_request_reply",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """What a request handler answers: content, metadata and binary buffers."""

    content: JSONDict
    metadata: JSONDict = field(default_factory=dict)
    buffers: list[bytes] = field(default_factory=list)


def reply_type(request_type: str) -> str:
    """``execute_request`` -> ``execute_reply`` (messaging spec, "Request-Reply")."""
    return request_type.removesuffix("_request") + "_reply"


def error_content(exc: BaseException, traceback: list[str] | None = None) -> JSONDict:
    """The content of an error reply for ``exc`` (messaging spec, "Request-Reply": errors).

    One key set everywhere: ``status``, ``ename``, ``evalue``, ``traceback``.
    """
    return {
        "status": "error",
        "ename": type(exc).__name__,
        "evalue": str(exc),
        "traceback": traceback or [],
    }


def unknown_request_reply(request: Message) -> Reply | None:
    """The answer to a message type nobody handles: an error for requests, nothing otherwise."""
    if not request.msg_type.endswith("_request"):
        return None
    content: JSONDict = {
        "status": "error",
        "ename": "UnknownMessageType",
        "evalue": request.msg_type,
        "traceback": [],
    }
    return Reply(content)


def status_content(state: str) -> JSONDict:
    """The content of a ``status`` message: ``busy``, ``idle`` or ``starting``."""
    return {"execution_state": state}


def reply_message(session: Session, request: Message, reply: Reply) -> Message:
    """The ``*_reply`` message answering ``request``, signed by ``session`` when serialized."""
    return session.message(
        reply_type(request.msg_type),
        reply.content,
        parent=request,
        metadata=reply.metadata,
        buffers=reply.buffers,
    )
