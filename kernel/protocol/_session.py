"""Turning :class:`Message` objects into ZeroMQ frame lists and back.

Wire format (messaging spec, "The Wire Protocol")::

    [identities..., b"<IDS|MSG>", signature, header, parent_header, metadata, content, buffers...]

:class:`Session` is pure: it never touches a socket. Every inbound problem is
raised as a :class:`~kernel.protocol.ProtocolError` subclass with a message
that says exactly what was wrong, so receivers can log and drop it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ._errors import MalformedMessage, ReplayedMessage
from ._freshness import refusal
from ._message import JSONDict, Message, new_id
from ._signing import DEFAULT_REPLAY_HISTORY, Signer

__all__ = ["DEFAULT_MAX_JSON_FRAME", "DELIMITER", "Received", "Session"]

DELIMITER = b"<IDS|MSG>"

#: Largest JSON frame accepted from a peer. Output and code travel in JSON
#: frames; anything larger is almost certainly hostile or broken. Binary
#: payloads belong in buffers, which are not limited here (the transport may
#: cap the whole message with ZMQ_MAXMSGSIZE).
DEFAULT_MAX_JSON_FRAME = 64 * 1024 * 1024

_HEADER_KEYS = ("msg_id", "msg_type")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


#: One encoder for every message: ``json.dumps`` with options builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_json_default).encode

#: json's C encoder with those options, built once: ``JSONEncoder.encode`` builds one per
#: call (and a dict for its circular-reference check), ~40% of encoding a message's small
#: frames (a header 4.7 -> 2.9 us, ``{}`` 2.2 -> 0.6 us). Without that check, as a shared
#: check dict would race between threads: a circular structure ends in RecursionError,
#: said as json says it (ValueError). None where json has no C accelerator.
_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)  # untyped in typeshed
_c_encode: Callable[[Any, int], list[str]] | None = (
    _make_c_encoder(
        None, _json_default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    if _make_c_encoder is not None
    else None
)


def _dumps(obj: JSONDict) -> bytes:
    if _c_encode is None:
        return _encode(obj).encode("utf-8", "surrogatepass")
    try:
        text = "".join(_c_encode(obj, 0))
    except RecursionError:
        raise ValueError("Circular reference detected") from None
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class Received:
    """A verified inbound message and the routing identities that preceded it."""

    identities: list[bytes]
    message: Message


class Session:
    """One endpoint's signing key, session id and replay history.

    Use a separate instance per process and connection; its replay history is
    what makes a captured message useless to an attacker.
    """

    def __init__(
        self,
        key: bytes = b"",
        signature_scheme: str = "hmac-sha256",
        *,
        session_id: str | None = None,
        username: str | None = None,
        max_json_frame: int = DEFAULT_MAX_JSON_FRAME,
        replay_history: int = DEFAULT_REPLAY_HISTORY,
    ) -> None:
        self.session_id = session_id or new_id()
        self.username = username
        self.signer = Signer(key, signature_scheme, replay_history=replay_history)
        self.max_json_frame = max_json_frame
        #: Epoch seconds: a signed message dated earlier is refused as a replay from
        #: before a restart (``_freshness``); None: no date check (clients, tests).
        self.not_before: float | None = None
        #: This process's instance id: a signed message naming another in its header
        #: (``_freshness.TARGET_KEY``) is refused; one naming it skips the date check.
        #: None: names are not checked (kernels, clients).
        self.instance: str | None = None
        #: False (the hub): a message naming another instance is judged by its date.
        self.strict_instance = True
        #: False where the transport already authenticates every peer and keeps every
        #: frame intact (ipc in an owner-only directory, or Curve): inbound signatures
        #: are then neither checked nor remembered against replays, a whole HMAC pass
        #: per message that would protect against nothing the transport lets through.
        #: A receiver that turns it off rejects duplicates by its own means (the pool
        #: client's engine links: reply numbers and the tracker). Outbound messages are
        #: signed as ever (the peer may check them).
        self.check_signatures = True

    def fork(self) -> Session:
        """A session with the same key and id but its own replay history.

        Each thread that receives needs its own (the history is not thread-safe).
        """
        signer = self.signer
        clone = Session(session_id=self.session_id, username=self.username)
        clone.signer = Signer(signer.key, signer.scheme, replay_history=signer.replay_history)
        clone.max_json_frame = self.max_json_frame
        clone.not_before = self.not_before
        clone.instance = self.instance
        clone.strict_instance = self.strict_instance
        clone.check_signatures = self.check_signatures
        return clone

    # -- building ---------------------------------------------------------

    def message(
        self,
        msg_type: str,
        content: JSONDict | None = None,
        *,
        parent: Message | JSONDict | None = None,
        metadata: JSONDict | None = None,
        buffers: list[bytes] | None = None,
        date: str | None = None,
    ) -> Message:
        """A new message stamped with this session's id (and ``date``, if given: the
        requests of one broadcast share the stamp, ``utc_now_iso()``, taken once)."""
        extra = {"username": self.username} if self.username else {}
        return Message.create(
            msg_type,
            content,
            session=self.session_id,
            parent=parent,
            metadata=metadata,
            buffers=buffers,
            date=date,
            **extra,
        )

    # -- to the wire ------------------------------------------------------

    def serialize(
        self, message: Message, identities: Sequence[bytes] = (), *, copy_buffers: bool = True
    ) -> list[bytes]:
        """The frame list for ``message``, signed, preceded by ``identities``.

        Buffers become ``bytes`` unless ``copy_buffers`` is False: then a memoryview (a
        numpy array's data) is passed on as it is, for a zero-copy send.
        """
        json_frames = [
            _dumps(message.header),
            _dumps(message.parent_header),
            _dumps(message.metadata),
            _dumps(message.content),
        ]
        return [
            *identities,
            DELIMITER,
            self.signer.sign(json_frames),
            *json_frames,
            # The signature does not cover buffers (Signer.sign_buffers does, on request).
            *(message.buffers if not copy_buffers else (bytes(b) for b in message.buffers)),
        ]

    def serialize_many(
        self, messages: Sequence[Message], *, copy_buffers: bool = True
    ) -> list[list[bytes]]:
        """``[self.serialize(m) for m in messages]``, the same frames, but a parent header,
        metadata, content or buffer list that several messages share (the same object) is
        encoded once: the requests of a broadcast differ only in their headers, and
        encoding the three other JSON frames again for each engine was most of building
        its frames. Each message is still signed whole (its own header included)."""
        encoded: dict[int, bytes] = {}  # id() of an object the messages hold -> its JSON

        def once(obj: JSONDict) -> bytes:
            if not obj:  # a parent-less request's {} (each message has one of its own)
                return b"{}"
            frame = encoded.get(id(obj))
            if frame is None:
                frame = encoded[id(obj)] = _dumps(obj)
            return frame

        sign = self.signer.sign
        out: list[list[bytes]] = []
        for message in messages:
            json_frames = [
                _dumps(message.header),
                once(message.parent_header),
                once(message.metadata),
                once(message.content),
            ]
            buffers = message.buffers
            out.append(
                [
                    DELIMITER,
                    sign(json_frames),
                    *json_frames,
                    *(buffers if not copy_buffers else (bytes(b) for b in buffers)),
                ]
            )
        return out

    # -- from the wire ----------------------------------------------------

    def deserialize(self, frames: Sequence[bytes | memoryview]) -> Received:
        """Parse and verify a frame list.

        Buffer frames that are memoryviews are kept as they are (not copied); every
        other frame becomes ``bytes``.

        Raises :class:`MalformedMessage` when the delimiter or frames are
        missing, a JSON frame is too large, not JSON or not an object, or the
        header lacks ``msg_id``/``msg_type``; :class:`SignatureError` when the
        signature is wrong; :class:`ReplayedMessage` for a replay.
        """
        try:
            split = frames.index(DELIMITER)
        except ValueError:
            raise MalformedMessage("no <IDS|MSG> delimiter frame") from None
        if len(frames) < split + 6:
            raise MalformedMessage(
                "expected a signature and 4 JSON frames after the delimiter, "
                f"got {len(frames) - split - 1} frames"
            )
        # Written out per frame, not as loops and generators: this runs for every message
        # every process receives (a reply's parse was ~30 us, a sixth of it the loops).
        # (A comprehension is a function call in Python 3.11: none where none is needed.)
        identities = [bytes(f) for f in frames[:split]] if split else []
        signature = bytes(frames[split + 1])
        json_frames = [
            bytes(frames[split + 2]),
            bytes(frames[split + 3]),
            bytes(frames[split + 4]),
            bytes(frames[split + 5]),
        ]
        # Buffers received without a copy (memoryviews, see kernel.transport._frames) stay so.
        buffers = (
            [f if isinstance(f, memoryview) else bytes(f) for f in frames[split + 6 :]]
            if len(frames) > split + 6
            else []
        )
        limit = self.max_json_frame
        if max(map(len, json_frames)) > limit:
            for name, frame in zip(_FRAME_NAMES, json_frames, strict=True):
                if len(frame) > limit:
                    raise MalformedMessage(
                        f"{name} frame is {len(frame)} bytes, over the {limit} byte limit"
                    )
        if self.check_signatures:
            try:
                self.signer.verify(signature, json_frames)
            except ReplayedMessage as exc:  # the log line says which message was refused
                raise ReplayedMessage(f"{_named(json_frames[0])}: {exc}") from None
        header = _loads("header", json_frames[0])
        parent = _loads("parent_header", json_frames[1])
        metadata = _loads("metadata", json_frames[2])
        content = _loads("content", json_frames[3])
        for key in _HEADER_KEYS:
            if not isinstance(header.get(key), str):
                raise MalformedMessage(f"header has no string {key!r}")
        if (self.not_before is not None or self.instance is not None) and self.signer.is_signing:
            why = refusal(
                header,
                not_before=self.not_before,
                instance=self.instance,
                strict=self.strict_instance,
            )
            if why is not None:
                raise ReplayedMessage(f"{header['msg_type']} {header['msg_id']}: {why}")
        # Message.buffers are bytes-like: memoryviews included, as for sending.
        message = Message(header, parent, metadata, content, buffers)  # type: ignore[arg-type]
        return Received(identities, message)


_FRAME_NAMES = ("header", "parent_header", "metadata", "content")


def _named(header_frame: bytes) -> str:
    """``"msg_type msg_id"`` of a signed header frame, for a refusal's one log line."""
    try:
        header = json.loads(header_frame)
        return f"{header['msg_type']} {header['msg_id']}"
    except (ValueError, TypeError, KeyError):
        return "a message"


#: The C scanner behind ``json.loads``, called directly: ``json.loads`` adds two regular
#: expression matches (whitespace before and after) and three Python calls per frame,
#: a third of parsing a message's small frames. Anything it does not take whole (space
#: around the value, an error) goes through ``json.loads``, which decides.
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _loads(name: str, frame: bytes) -> JSONDict:
    try:
        # UTF-8 (the spec) decoded here: json.loads would first guess among UTF-8/16/32.
        text = frame.decode("utf-8", "surrogatepass")
        try:
            value, end = _scan_once(text, 0)
        except (StopIteration, ValueError):
            end = -1
        if end != len(text):
            value = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedMessage(f"{name} frame is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedMessage(f"{name} frame must be a JSON object, got {type(value).__name__}")
    return value
