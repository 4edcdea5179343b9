"""Wire compatibility with the reference peer, jupyter_client.session.Session (never mocked)."""

from __future__ import annotations

from typing import Any

import pytest
from jupyter_client.session import Session as PeerSession

from kernel.protocol import DELIMITER, Message, SignatureError
from kernel.protocol import Session as LoomSession

KEY = b"5f3c0a0e-1b9e-4f6b-9d27-2f0d1c6b8a11"

SCHEMES = ["hmac-sha256", "hmac-sha512"]


def _peer(key: bytes, scheme: str = "hmac-sha256") -> PeerSession:
    return PeerSession(key=key, signature_scheme=scheme)


def _peer_receive(peer: PeerSession, frames: list[bytes]) -> tuple[list[bytes], dict[str, Any]]:
    """What jupyter_client's socket readers do with a frame list."""
    idents, rest = peer.feed_identities(frames, copy=True)
    return list(idents), peer.deserialize(rest, content=True, copy=True)


def _peer_frames(
    peer: PeerSession, msg: dict[str, Any], idents: list[bytes], buffers: list[bytes]
) -> list[bytes]:
    """The frames jupyter_client's ``Session.send`` puts on the wire (serialize + buffers)."""
    return [*peer.serialize(msg, idents), *buffers]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_loom_message_is_accepted_by_jupyter_client(scheme: str) -> None:
    loom = LoomSession(KEY, scheme, username="loom-user")
    request = loom.message("execute_request", {"code": "print('hi')", "silent": False})
    reply = loom.message(
        "execute_reply",
        {"status": "ok", "execution_count": 7, "text": "naïve — 日本 🐍"},
        parent=request,
        metadata={"engine": "e1"},
        buffers=[b"\x00\x01binary", b""],
    )
    reply.header["future_key"] = "kept"
    idents, received = _peer_receive(_peer(KEY, scheme), loom.serialize(reply, [b"client-id"]))

    assert idents == [b"client-id"]
    assert received["msg_type"] == "execute_reply"
    assert received["msg_id"] == reply.msg_id
    assert received["header"]["session"] == loom.session_id
    assert received["header"]["username"] == "loom-user"
    assert received["header"]["version"] == reply.header["version"]
    assert received["header"]["future_key"] == "kept"
    assert received["content"] == reply.content
    assert received["metadata"] == {"engine": "e1"}
    assert received["parent_header"]["msg_id"] == request.msg_id
    assert received["parent_header"]["msg_type"] == "execute_request"
    assert received["parent_header"]["session"] == loom.session_id
    assert [bytes(b) for b in received["buffers"]] == [b"\x00\x01binary", b""]


def test_loom_date_parses_as_aware_datetime_in_jupyter_client() -> None:
    loom = LoomSession(KEY)
    msg = loom.message("kernel_info_request")
    _, received = _peer_receive(_peer(KEY), loom.serialize(msg))
    date = received["header"]["date"]
    assert date.tzinfo is not None
    assert date.isoformat().replace("+00:00", "Z").startswith(msg.header["date"][:19])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_jupyter_client_message_is_accepted_by_loom(scheme: str) -> None:
    peer = _peer(KEY, scheme)
    request = peer.msg("execute_request", content={"code": "x = 1", "silent": False})
    reply = peer.msg(
        "execute_reply",
        content={"status": "ok", "execution_count": 1, "text": "ünïcödé ✓"},
        parent=request,
        metadata={"dependencies_met": True},
    )
    buffers = [b"buf-one", bytes(range(256))]
    frames = _peer_frames(peer, reply, [b"kernel-ident", b"second"], buffers)

    received = LoomSession(KEY, scheme).deserialize(frames)

    assert received.identities == [b"kernel-ident", b"second"]
    message = received.message
    assert isinstance(message, Message)
    assert message.msg_type == "execute_reply"
    assert message.msg_id == reply["header"]["msg_id"]
    assert message.header["session"] == peer.session
    assert message.header["version"] == reply["header"]["version"]
    assert message.content == {"status": "ok", "execution_count": 1, "text": "ünïcödé ✓"}
    assert message.metadata == {"dependencies_met": True}
    assert message.parent_id == request["header"]["msg_id"]
    assert message.parent_header["msg_type"] == "execute_request"
    assert message.parent_header["session"] == peer.session
    assert isinstance(message.parent_header["date"], str)
    assert message.buffers == buffers


def test_jupyter_client_message_without_parent_or_buffers() -> None:
    peer = _peer(KEY)
    msg = peer.msg("status", content={"execution_state": "busy"})
    received = LoomSession(KEY).deserialize(peer.serialize(msg))
    assert received.identities == []
    assert received.message.parent_header == {}
    assert received.message.parent_id is None
    assert received.message.buffers == []
    assert received.message.content == {"execution_state": "busy"}


def test_loom_signature_equals_jupyter_client_signature() -> None:
    loom = LoomSession(KEY)
    frames = loom.serialize(loom.message("x", {"a": [1, 2]}))
    split = frames.index(DELIMITER)
    assert frames[split + 1] == _peer(KEY).sign(frames[split + 2 : split + 6])


def test_unsigned_both_ways() -> None:
    loom = LoomSession(b"")
    peer = _peer(b"")
    loom_frames = loom.serialize(loom.message("comm_open", {"target_name": "t"}))
    _, received = _peer_receive(peer, loom_frames)
    assert received["content"] == {"target_name": "t"}

    peer_frames = peer.serialize(peer.msg("comm_close", content={"comm_id": "c"}))
    assert peer_frames[1] == b""
    assert loom.deserialize(peer_frames).message.content == {"comm_id": "c"}


def test_key_mismatch_is_rejected_both_ways() -> None:
    loom = LoomSession(b"loom-key")
    peer = _peer(b"peer-key")
    with pytest.raises(ValueError, match="Invalid Signature"):
        _peer_receive(peer, loom.serialize(loom.message("x")))
    with pytest.raises(SignatureError, match="invalid HMAC signature"):
        loom.deserialize(peer.serialize(peer.msg("x")))


def test_replay_of_jupyter_client_frames_is_rejected_by_loom() -> None:
    peer = _peer(KEY)
    loom = LoomSession(KEY)
    frames = peer.serialize(peer.msg("execute_request", content={"code": "1"}))
    loom.deserialize(frames)
    with pytest.raises(SignatureError, match="already used"):
        loom.deserialize(frames)


def test_round_trip_through_both_implementations() -> None:
    # Loom -> jupyter_client -> (re-serialized by jupyter_client) -> Loom.
    loom_out, loom_in = LoomSession(KEY), LoomSession(KEY)
    peer = _peer(KEY)
    original = loom_out.message("display_data", {"data": {"text/plain": "∑"}, "metadata": {}})
    _, seen = _peer_receive(peer, loom_out.serialize(original))
    relayed = {
        "header": seen["header"],
        "parent_header": seen["parent_header"],
        "metadata": seen["metadata"],
        "content": seen["content"],
    }
    back = loom_in.deserialize(peer.serialize(relayed)).message
    assert back.msg_id == original.msg_id
    assert back.msg_type == original.msg_type
    assert back.content == original.content
    assert back.header["session"] == original.header["session"]
