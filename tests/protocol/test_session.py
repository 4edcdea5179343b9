"""Session: messages to frames and back, signing, replay protection, malformed input."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime

import pytest

from kernel.protocol import (
    DELIMITER,
    PROTOCOL_VERSION,
    MalformedMessage,
    Message,
    ProtocolError,
    Received,
    ReplayedMessage,
    Session,
    SignatureError,
)

KEY = b"0123456789abcdef-test-key"


def _pair(
    key: bytes = KEY, scheme: str = "hmac-sha256", *, replay_history: int = 1 << 16
) -> tuple[Session, Session]:
    """A sender and a receiver sharing ``key`` (separate replay histories, like two processes)."""
    return (
        Session(key, scheme, replay_history=replay_history),
        Session(key, scheme, replay_history=replay_history),
    )


def _frames_without_signature_check(header: bytes, *, content: bytes = b"{}") -> list[bytes]:
    """An unsigned frame list with a hand-written header frame."""
    return [DELIMITER, b"", header, b"{}", b"{}", content]


# -- building --------------------------------------------------------------


def test_message_header_has_spec_fields() -> None:
    session = Session(session_id="sess-1", username="ada")
    msg = session.message("kernel_info_request")
    assert set(msg.header) == {"msg_id", "msg_type", "username", "session", "date", "version"}
    assert msg.msg_type == "kernel_info_request"
    assert msg.header["session"] == "sess-1"
    assert msg.header["username"] == "ada"
    assert msg.header["version"] == PROTOCOL_VERSION
    assert msg.header["date"].endswith("Z")
    assert msg.parent_header == {}
    assert msg.parent_id is None


def test_message_ids_are_unique() -> None:
    session = Session()
    ids = {session.message("x").msg_id for _ in range(100)}
    assert len(ids) == 100


def test_message_parent_may_be_message_or_header() -> None:
    session = Session()
    request = session.message("execute_request", {"code": "1"})
    by_message = session.message("execute_reply", parent=request)
    by_header = session.message("execute_reply", parent=request.header)
    assert by_message.parent_header == request.header
    assert by_header.parent_header == request.header
    assert by_message.parent_id == request.msg_id


# -- round trip ------------------------------------------------------------


def test_round_trip_preserves_everything() -> None:
    sender, receiver = _pair()
    parent = sender.message("execute_request", {"code": "print(1)"})
    msg = sender.message(
        "execute_reply",
        {"status": "ok", "execution_count": 3, "nested": {"a": [1, 2.5, None, True]}},
        parent=parent,
        metadata={"started": "2024-01-01T00:00:00Z"},
    )
    frames = sender.serialize(msg)
    received = receiver.deserialize(frames)
    assert isinstance(received, Received)
    assert received.identities == []
    assert received.message == msg
    assert received.message.parent_id == parent.msg_id


def test_round_trip_with_identities_and_buffers() -> None:
    sender, receiver = _pair()
    idents = [b"router-id-1", b"\x00\x8b\xff\x00binary"]
    buffers = [b"", b"\x00\x01\x02", bytes(range(256)), DELIMITER]
    msg = sender.message("comm_msg", {"data": {}}, buffers=buffers)
    frames = sender.serialize(msg, idents)
    assert frames[:2] == idents
    assert frames[2] == DELIMITER
    assert frames[-4:] == buffers
    received = receiver.deserialize(frames)
    assert received.identities == idents
    assert received.message.buffers == buffers
    assert received.message == msg


def test_buffers_may_be_bytes_like() -> None:
    sender, receiver = _pair()
    views: list[bytes] = [memoryview(b"abc"), bytearray(b"def")]  # type: ignore[list-item]
    msg = sender.message("comm_msg", buffers=views)
    frames = sender.serialize(msg)
    assert frames[-2:] == [b"abc", b"def"]
    assert all(type(f) is bytes for f in frames)
    assert receiver.deserialize(frames).message.buffers == [b"abc", b"def"]


def test_deserialize_accepts_bytes_like_frames() -> None:
    sender, receiver = _pair()
    msg = sender.message("status", {"execution_state": "idle"})
    frames = [memoryview(f) for f in sender.serialize(msg, [b"id"])]
    received = receiver.deserialize(frames)
    assert received.identities == [b"id"]
    assert received.message == msg


def test_unicode_content_round_trips_as_utf8() -> None:
    sender, receiver = _pair()
    text = 'héllo wörld — 日本語 🐍 \u0000 \\ " \n'
    msg = sender.message("stream", {"name": "stdout", "text": text, "ключ": "значение"})
    frames = sender.serialize(msg)
    content_frame = frames[-1]
    # Non-ASCII travels as UTF-8, not as \u escapes (like jupyter_client's packer).
    assert "日本語".encode() in content_frame
    assert json.loads(content_frame.decode("utf-8"))["text"] == text
    assert receiver.deserialize(frames).message.content == msg.content


def test_unknown_header_keys_survive_round_trip() -> None:
    sender, receiver = _pair()
    msg = sender.message("execute_request", {"code": ""})
    msg.header["subshell_id"] = "abc"
    msg.header["future_field"] = {"nested": [1, 2]}
    msg.parent_header.update({"msg_id": "p", "msg_type": "x", "extra": 1})
    received = receiver.deserialize(sender.serialize(msg)).message
    assert received.header["subshell_id"] == "abc"
    assert received.header["future_field"] == {"nested": [1, 2]}
    assert received.parent_header == {"msg_id": "p", "msg_type": "x", "extra": 1}


def test_minimal_foreign_header_is_accepted() -> None:
    # Only msg_id and msg_type are required to route a message; older peers omit others.
    receiver = Session()
    frames = _frames_without_signature_check(b'{"msg_id":"m","msg_type":"t"}')
    message = receiver.deserialize(frames).message
    assert message.msg_id == "m"
    assert message.msg_type == "t"
    assert message.parent_id is None


def test_datetime_values_are_serialized_as_iso() -> None:
    sender, receiver = _pair()
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    msg = sender.message("x", {"when": when})
    assert receiver.deserialize(sender.serialize(msg)).message.content == {
        "when": "2024-05-06T07:08:09+00:00"
    }


def test_unserializable_content_raises_type_error() -> None:
    session = Session()
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        session.serialize(session.message("x", {"bad": object()}))


# -- signing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "digest"), [("hmac-sha256", "sha256"), ("hmac-sha512", "sha512")]
)
def test_signature_is_hex_hmac_of_the_four_json_frames(scheme: str, digest: str) -> None:
    sender, receiver = _pair(scheme=scheme)
    msg = sender.message("execute_request", {"code": "1"}, buffers=[b"not signed"])
    frames = sender.serialize(msg, [b"ident"])
    signature, json_frames = frames[2], frames[3:7]
    expected = hmac.new(KEY, b"".join(json_frames), digest).hexdigest().encode()
    assert signature == expected
    assert receiver.deserialize(frames).message == msg


def test_scheme_mismatch_is_rejected() -> None:
    sender = Session(KEY, "hmac-sha256")
    receiver = Session(KEY, "hmac-sha512")
    with pytest.raises(SignatureError, match="invalid HMAC signature"):
        receiver.deserialize(sender.serialize(sender.message("x")))


def test_empty_key_means_unsigned() -> None:
    sender, receiver = _pair(key=b"")
    assert not sender.signer.is_signing
    msg = sender.message("x", {"a": 1})
    frames = sender.serialize(msg)
    assert frames[1] == b""
    assert receiver.deserialize(frames).message == msg


def test_empty_key_ignores_any_signature_and_does_not_track_replays() -> None:
    sender, receiver = _pair(key=b"")
    frames = sender.serialize(sender.message("x"))
    frames[1] = b"deadbeef"
    assert receiver.deserialize(frames).message.msg_type == "x"
    # Without a key there is nothing to protect: the same frames are accepted again.
    assert receiver.deserialize(frames).message.msg_type == "x"


def test_unchecked_signatures_for_an_authenticating_transport() -> None:
    # check_signatures=False (the transport authenticates every peer): a wrong signature
    # and a repeat are both accepted, nothing is remembered; outbound messages are still
    # signed, and a fork keeps the setting.
    sender, receiver = _pair()
    receiver.check_signatures = False
    frames = sender.serialize(sender.message("x", {"a": 1}))
    assert frames[1] == sender.signer.sign(frames[2:6]) != b""
    assert receiver.deserialize(frames).message.content == {"a": 1}
    assert receiver.deserialize(frames).message.content == {"a": 1}
    frames[1] = b"deadbeef"
    assert receiver.deserialize(frames).message.msg_type == "x"
    assert receiver.fork().deserialize(frames).message.msg_type == "x"
    assert receiver.serialize(receiver.message("y"))[1] != b""
    # Everything else is still checked.
    with pytest.raises(MalformedMessage, match="not valid JSON"):
        receiver.deserialize([*frames[:2], b"{", *frames[3:]])
    receiver.check_signatures = True
    with pytest.raises(SignatureError):
        receiver.deserialize(frames)


def test_wrong_key_is_rejected() -> None:
    sender = Session(b"key-one")
    receiver = Session(b"key-two")
    with pytest.raises(SignatureError, match="invalid HMAC signature"):
        receiver.deserialize(sender.serialize(sender.message("x")))


def test_unsigned_message_rejected_when_keyed() -> None:
    sender = Session(b"")
    receiver = Session(KEY)
    with pytest.raises(SignatureError, match="unsigned but this connection has a key"):
        receiver.deserialize(sender.serialize(sender.message("x")))


@pytest.mark.parametrize("frame_index", [3, 4, 5, 6])
def test_tampered_json_frame_is_rejected(frame_index: int) -> None:
    sender, receiver = _pair()
    frames = sender.serialize(sender.message("x", {"a": 1}), [b"id"])
    frames[frame_index] = frames[frame_index].replace(b"}", b" }", 1)
    with pytest.raises(SignatureError, match="invalid HMAC signature"):
        receiver.deserialize(frames)


def test_bad_signature_raises_signature_error() -> None:
    sender, receiver = _pair()
    frames = sender.serialize(sender.message("x"))
    good = frames[1]
    flipped = bytes([good[0] ^ 0x01]) + good[1:]
    for bad in (flipped, good.upper(), good[:-1], good + b"0", b"not-hex", b"\xff" * 64):
        tampered = [*frames[:1], bad, *frames[2:]]
        with pytest.raises(SignatureError, match="invalid HMAC signature") as info:
            receiver.deserialize(tampered)
        assert type(info.value) is SignatureError
    # The genuine message still goes through afterwards: failures poison nothing.
    assert receiver.deserialize(frames).message.msg_type == "x"


def test_signature_errors_are_protocol_errors() -> None:
    assert issubclass(SignatureError, ProtocolError)
    assert issubclass(ReplayedMessage, SignatureError)
    assert issubclass(MalformedMessage, ProtocolError)


def test_unsigned_buffers_may_change_without_breaking_the_signature() -> None:
    # The spec signs only the four JSON frames; buffers are not covered.
    sender, receiver = _pair()
    frames = sender.serialize(sender.message("x", buffers=[b"one"]))
    frames[-1] = b"two"
    assert receiver.deserialize(frames).message.buffers == [b"two"]


@pytest.mark.parametrize(
    "scheme", ["md5-foo", "hmac-nosuchhash", "hmac-", "hmac", "", "sha256", "hmac-shake_128"]
)
def test_unknown_scheme_rejected_at_construction(scheme: str) -> None:
    with pytest.raises(SignatureError, match="unknown signature scheme"):
        Session(KEY, scheme)


@pytest.mark.parametrize("scheme", ["hmac-sha1", "hmac-sha384", "hmac-sha3_256", "hmac-blake2b"])
def test_other_hashlib_schemes_work(scheme: str) -> None:
    sender, receiver = _pair(scheme=scheme)
    msg = sender.message("x")
    assert receiver.deserialize(sender.serialize(msg)).message == msg


# -- replay protection -----------------------------------------------------


def test_replayed_message_is_rejected() -> None:
    sender, receiver = _pair()
    frames = sender.serialize(sender.message("execute_request", {"code": "rm -rf"}))
    receiver.deserialize(frames)
    with pytest.raises(ReplayedMessage, match="already used"):
        receiver.deserialize(list(frames))


def test_replay_with_different_identities_or_buffers_is_rejected() -> None:
    sender, receiver = _pair()
    frames = sender.serialize(sender.message("x", buffers=[b"b"]), [b"a"])
    receiver.deserialize(frames)
    with pytest.raises(ReplayedMessage):
        receiver.deserialize([b"other-ident", *frames[1:-1], b"other-buffer"])


def test_distinct_messages_are_not_replays() -> None:
    sender, receiver = _pair()
    for _ in range(50):
        receiver.deserialize(sender.serialize(sender.message("x", {"same": "content"})))


def test_replay_history_is_bounded() -> None:
    sender, receiver = _pair(replay_history=4)
    first = sender.serialize(sender.message("first"))
    receiver.deserialize(first)
    others = [sender.serialize(sender.message(f"other-{i}")) for i in range(5)]
    for frames in others[:3]:
        receiver.deserialize(frames)
    # Three later messages: the first is still remembered.
    with pytest.raises(ReplayedMessage):
        receiver.deserialize(first)
    receiver.deserialize(others[3])
    # Four later messages fill the history of 4: the first has been forgotten.
    assert receiver.deserialize(first).message.msg_type == "first"
    # ...and is remembered again now that it was accepted a second time.
    with pytest.raises(ReplayedMessage):
        receiver.deserialize(first)
    # The most recent ones are still rejected.
    with pytest.raises(ReplayedMessage):
        receiver.deserialize(others[3])


def test_a_rejected_forgery_is_not_recorded_as_seen() -> None:
    sender, receiver = _pair()
    frames = sender.serialize(sender.message("x"))
    forged = [frames[0], frames[1], frames[2], frames[3], frames[4], b'{"evil":1}']
    with pytest.raises(SignatureError):
        receiver.deserialize(forged)
    assert receiver.deserialize(frames).message.msg_type == "x"


# -- malformed input -------------------------------------------------------


def test_no_delimiter() -> None:
    sender, receiver = _pair()
    frames = sender.serialize(sender.message("x"), [b"id"])
    frames.remove(DELIMITER)
    with pytest.raises(MalformedMessage, match=r"^no <IDS\|MSG> delimiter frame$"):
        receiver.deserialize(frames)


def test_empty_frame_list() -> None:
    with pytest.raises(MalformedMessage, match=r"^no <IDS\|MSG> delimiter frame$"):
        Session().deserialize([])


@pytest.mark.parametrize("kept", [0, 1, 2, 3, 4])
def test_too_few_frames(kept: int) -> None:
    sender, receiver = _pair()
    frames = sender.serialize(sender.message("x"), [b"id"])
    truncated = frames[: 2 + kept]
    with pytest.raises(
        MalformedMessage,
        match=rf"^expected a signature and 4 JSON frames after the delimiter, got {kept} frames$",
    ):
        receiver.deserialize(truncated)


@pytest.mark.parametrize(
    ("index", "name"), [(2, "header"), (3, "parent_header"), (4, "metadata"), (5, "content")]
)
def test_invalid_json(index: int, name: str) -> None:
    frames = _frames_without_signature_check(b'{"msg_id":"m","msg_type":"t"}')
    frames[index] = b'{"unterminated": '
    with pytest.raises(MalformedMessage, match=rf"^{name} frame is not valid JSON: "):
        Session().deserialize(frames)


def test_invalid_json_in_signed_message() -> None:
    # A correctly signed frame that is not JSON (a buggy peer, not an attacker).
    sender, receiver = _pair()
    json_frames = [b'{"msg_id":"m","msg_type":"t"}', b"{}", b"{}", b"not json"]
    frames = [DELIMITER, sender.signer.sign(json_frames), *json_frames]
    with pytest.raises(MalformedMessage, match=r"^content frame is not valid JSON: "):
        receiver.deserialize(frames)


@pytest.mark.parametrize(
    ("payload", "type_name"),
    [(b"[1, 2]", "list"), (b'"str"', "str"), (b"3", "int"), (b"null", "NoneType")],
)
def test_json_that_is_not_an_object(payload: bytes, type_name: str) -> None:
    frames = _frames_without_signature_check(b'{"msg_id":"m","msg_type":"t"}', content=payload)
    with pytest.raises(
        MalformedMessage, match=rf"^content frame must be a JSON object, got {type_name}$"
    ):
        Session().deserialize(frames)


def test_header_that_is_a_list() -> None:
    frames = _frames_without_signature_check(b'["msg_id", "msg_type"]')
    with pytest.raises(MalformedMessage, match=r"^header frame must be a JSON object, got list$"):
        Session().deserialize(frames)


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        (b'{"msg_id":"m"}', "msg_type"),
        (b'{"msg_id":"m","msg_type":null}', "msg_type"),
        (b'{"msg_id":"m","msg_type":5}', "msg_type"),
        (b'{"msg_type":"t"}', "msg_id"),
        (b"{}", "msg_id"),
    ],
)
def test_header_without_required_string_field(header: bytes, missing: str) -> None:
    with pytest.raises(MalformedMessage, match=rf"^header has no string '{missing}'$"):
        Session().deserialize(_frames_without_signature_check(header))


def test_signed_header_without_msg_type() -> None:
    sender, receiver = _pair()
    msg = sender.message("x")
    del msg.header["msg_type"]
    with pytest.raises(MalformedMessage, match=r"^header has no string 'msg_type'$"):
        receiver.deserialize(sender.serialize(msg))


def test_oversized_json_frame() -> None:
    sender = Session(KEY)
    receiver = Session(KEY, max_json_frame=100)
    header = b'{"msg_id":"m","msg_type":"stream"}'
    content = json.dumps({"text": "x" * 200}).encode()
    json_frames = [header, b"{}", b"{}", content]
    frames = [DELIMITER, sender.signer.sign(json_frames), *json_frames]
    with pytest.raises(
        MalformedMessage, match=rf"^content frame is {len(content)} bytes, over the 100 byte limit$"
    ):
        receiver.deserialize(frames)
    # A full header built by Session is itself over 100 bytes: the first frame is named.
    full = sender.serialize(sender.message("x"))
    with pytest.raises(MalformedMessage, match=rf"^header frame is {len(full[2])} bytes, over"):
        receiver.deserialize(full)


def test_json_frame_limit_is_inclusive_and_excludes_buffers() -> None:
    header = b'{"msg_id":"m","msg_type":"t"}'
    content = b'{"k":"' + b"v" * (100 - 8) + b'"}'
    assert len(content) == 100
    frames = [*_frames_without_signature_check(header, content=content), b"z" * 1000]
    received = Session(max_json_frame=100).deserialize(frames)
    assert received.message.buffers == [b"z" * 1000]
    frames[5] = content[:-1] + b" }"
    with pytest.raises(MalformedMessage, match=r"^content frame is 101 bytes"):
        Session(max_json_frame=100).deserialize(frames)


def test_oversized_frame_is_rejected_before_signature_check() -> None:
    # Size is checked before the HMAC is computed, so a huge forged frame is cheap to drop.
    receiver = Session(KEY, max_json_frame=100)
    frames = [DELIMITER, b"bogus", b"{}", b"{}", b"{}", b"[" + b" " * 200 + b"]"]
    with pytest.raises(MalformedMessage, match="over the 100 byte limit"):
        receiver.deserialize(frames)


@pytest.mark.parametrize("bad", [b'{"text":"\xff"}', b'{"text":"\xc3\x28"}', b"\xff\xfe\xfd"])
def test_invalid_utf8(bad: bytes) -> None:
    frames = _frames_without_signature_check(b'{"msg_id":"m","msg_type":"t"}', content=bad)
    with pytest.raises(MalformedMessage, match=r"^content frame is not valid JSON: .*can't decode"):
        Session().deserialize(frames)


def test_deeply_nested_json_is_malformed_not_a_crash() -> None:
    frames = _frames_without_signature_check(
        b'{"msg_id":"m","msg_type":"t"}', content=b"[" * 200_000 + b"]" * 200_000
    )
    with pytest.raises(MalformedMessage, match=r"^content frame is not valid JSON: "):
        Session().deserialize(frames)


def test_huge_integer_is_malformed_not_a_crash() -> None:
    frames = _frames_without_signature_check(
        b'{"msg_id":"m","msg_type":"t"}', content=b'{"n":' + b"9" * 10_000 + b"}"
    )
    with pytest.raises(MalformedMessage, match=r"^content frame is not valid JSON: "):
        Session().deserialize(frames)


def test_first_delimiter_splits_identities() -> None:
    sender, receiver = _pair(key=b"")
    frames = sender.serialize(sender.message("x", buffers=[DELIMITER]), [b"id"])
    received = receiver.deserialize(frames)
    assert received.identities == [b"id"]
    assert received.message.buffers == [DELIMITER]


def test_message_equality_is_structural() -> None:
    a = Message({"msg_id": "1", "msg_type": "t"}, content={"x": 1})
    b = Message({"msg_id": "1", "msg_type": "t"}, content={"x": 1})
    assert a == b
    assert a != Message({"msg_id": "1", "msg_type": "t"}, content={"x": 2})


def test_fork_shares_key_and_id_but_not_replay_history() -> None:
    sender, receiver = _pair(replay_history=8)
    receiver.max_json_frame = 5000
    forked = receiver.fork()
    assert forked.session_id == receiver.session_id
    assert forked.signer.scheme == receiver.signer.scheme
    assert forked.max_json_frame == 5000
    frames = sender.serialize(sender.message("x"))
    receiver.deserialize(frames)
    # The fork verifies with the same key and has not seen these frames yet.
    assert forked.deserialize(frames).message.msg_type == "x"
    with pytest.raises(ReplayedMessage):
        forked.deserialize(frames)
    with pytest.raises(ReplayedMessage):
        receiver.deserialize(frames)
