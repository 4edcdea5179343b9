"""Reply framing shared by every answering driver (kernel.protocol._replies)."""

from __future__ import annotations

from kernel.protocol import (
    Message,
    Reply,
    Session,
    error_content,
    reply_message,
    reply_type,
    status_content,
    unknown_request_reply,
)


def test_reply_type_follows_the_request_type() -> None:
    assert reply_type("execute_request") == "execute_reply"
    assert reply_type("apply_request") == "apply_reply"


def test_error_content_has_one_key_set_whoever_answers() -> None:
    assert error_content(ValueError("bad")) == {
        "status": "error",
        "ename": "ValueError",
        "evalue": "bad",
        "traceback": [],
    }
    assert error_content(KeyError("k"), ["line"])["traceback"] == ["line"]


def test_unknown_requests_get_an_error_and_other_messages_nothing() -> None:
    request = Message.create("frobnicate_request", {}, session="s")
    reply = unknown_request_reply(request)
    assert reply is not None
    assert reply.content["ename"] == "UnknownMessageType"
    assert reply.content["evalue"] == "frobnicate_request"
    assert unknown_request_reply(Message.create("comm_msg", {}, session="s")) is None


def test_a_reply_message_carries_content_metadata_and_buffers_to_the_wire() -> None:
    server, client = Session(b"key"), Session(b"key")
    request = Message.create("apply_request", {}, session="client")
    reply = Reply({"status": "ok"}, {"engine": "e1"}, [b"\x00pickled", b"array"])
    message = reply_message(server, request, reply)
    received = client.deserialize(server.serialize(message, [b"ident"])).message
    assert received.msg_type == "apply_reply"
    assert received.parent_header["msg_id"] == request.msg_id
    assert received.content == {"status": "ok"}
    assert received.metadata == {"engine": "e1"}
    assert received.buffers == [b"\x00pickled", b"array"]


def test_status_content_is_the_spec_shape() -> None:
    assert status_content("busy") == {"execution_state": "busy"}
