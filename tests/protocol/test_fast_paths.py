"""The protocol's fast paths give what the slow ones gave (ids, dates, JSON, HMAC)."""

from __future__ import annotations

import hmac
import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kernel.protocol import MalformedMessage, Session
from kernel.protocol._message import new_msg_id, utc_now_iso
from kernel.protocol._session import _dumps, _loads
from kernel.protocol._signing import _BUFFERS_DOMAIN, Signer

pytestmark = pytest.mark.timeout(30)


def test_message_ids_are_unique_and_a_forked_child_has_its_own() -> None:
    ids = {new_msg_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: an engine forked by the fork server, after the prefix was set
        os.write(write_end, new_msg_id().encode())
        os._exit(0)
    os.close(write_end)
    try:
        child_id = os.read(read_end, 200).decode()
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    parent_id = new_msg_id()
    assert child_id.rsplit("_", 1)[0] != parent_id.rsplit("_", 1)[0]
    assert child_id not in ids


def test_messages_get_the_fast_ids() -> None:
    session = Session(b"key")
    first, second = session.message("a"), session.message("a")
    assert first.msg_id != second.msg_id
    assert re.fullmatch(r"[0-9a-f]{32}_\d+", first.msg_id)


def test_dates_are_iso_8601_utc_with_microseconds_and_current() -> None:
    stamp = utc_now_iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs(parsed - datetime.now(UTC)) < timedelta(seconds=2)


@pytest.mark.parametrize(
    "frame", [b'{"a": 1}', b' {"a": [1, 2]} ', b'\n{"b": "\xc3\xa9"}\t', b"{}", b'{"n": NaN}']
)
def test_json_frames_parse_as_json_loads_parses_them(frame: bytes) -> None:
    expected = json.loads(frame.decode())
    got = _loads("content", frame)
    assert json.dumps(got) == json.dumps(expected)


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b'{"a": 1} x', "Extra data"),
        (b"", "Expecting value"),
        (b'{"a":', "Expecting value"),
        (b"\xef\xbb\xbf{}", "BOM"),
        (b"[1]", "must be a JSON object"),
        (b"\xff{}", "not valid JSON"),
    ],
)
def test_bad_json_frames_are_refused_with_json_loads_words(frame: bytes, why: str) -> None:
    with pytest.raises(MalformedMessage, match=why):
        _loads("content", frame)


@pytest.mark.parametrize("scheme", ["hmac-sha256", "hmac-sha1", "hmac-sha512", "hmac-md5"])
def test_signatures_are_the_hmac_modules(scheme: str) -> None:
    key, frames = b"secret-key", [b'{"msg_id":"x"}', b"{}", b"{}", b'{"a":1}']
    signer = Signer(key, scheme)
    mac = hmac.new(key, digestmod=scheme.removeprefix("hmac-"))
    for frame in frames:
        mac.update(frame)
    assert signer.sign(frames) == mac.hexdigest().encode()
    assert signer.sign(frames) == signer.sign(frames)  # the keyed MAC is copied, not used up
    buffers: list[bytes | memoryview] = [b"abc", memoryview(b"defg")]
    mac = hmac.new(key, _BUFFERS_DOMAIN, digestmod=scheme.removeprefix("hmac-"))
    for buffer in buffers:
        mac.update(len(buffer).to_bytes(8, "big"))
        mac.update(buffer)
    assert signer.sign_buffers(buffers) == mac.hexdigest()
    assert Signer(b"", scheme).sign(frames) == b""


def test_serialize_many_gives_each_message_its_own_frames_and_signature() -> None:
    """A broadcast's messages share their metadata, content and buffers (encoded once);
    each one's frames are what ``serialize`` gives it, signed over its own header."""
    sender, receiver = Session(b"key"), Session(b"key")
    metadata, content = {"loom_unannounced": True, "tag": "é"}, {"code": "a = 1"}
    buffers: list[Any] = [b"pickle", memoryview(b"x" * 2000)]  # bytes-like, as sent
    shared = [
        sender.message("apply_request", content, metadata=metadata, buffers=buffers)
        for _ in range(3)
    ]
    shared[1].header["loom_target"] = "engine-1"  # per engine, after the message was built
    alone = sender.message("execute_request", {"code": "b"}, metadata={"other": 1})
    messages = [*shared, alone]
    many = sender.serialize_many(messages)
    assert many == [sender.serialize(m) for m in messages]
    assert len({frames[1] for frames in many}) == 4  # every message signed on its own
    for message, frames in zip(messages, many, strict=True):
        got = receiver.deserialize(frames).message
        assert (got.header, got.metadata, got.content) == (
            message.header,
            message.metadata,
            message.content,
        )
        assert got.buffers == [bytes(b) for b in message.buffers]
    views = sender.serialize_many(shared, copy_buffers=False)
    assert views[0][-1] is buffers[1]  # zero-copy: the buffers as given


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"msg_id": "a_1", "n": 3, "f": 0.1, "big": 10**30, "t": True, "none": None},
        {"text": 'é ü 日本 "quoted" \\ \n\t \x00', "nested": {"list": [1, [2, {}]], "e": []}},
        {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")},
        {1: "int key", 2.5: "float key", None: "none key", False: "bool key"},
    ],
)
def test_json_frames_encode_as_the_json_module_encodes_them(value: dict[Any, Any]) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert _dumps(value) == expected.encode("utf-8", "surrogatepass")


def test_json_encoding_of_dates_bytes_and_bad_values_is_as_before() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert (
        _dumps({"d": when, "b": b"x\xff"})
        == '{"d":"2026-01-02T03:04:05.000006+00:00","b":"x\ufffd"}'.encode()
    )
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        _dumps({"s": {1}})
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular reference"):
        _dumps(circular)
    assert _dumps({"after": "an error"}) == b'{"after":"an error"}'  # nothing left behind


def test_a_stamp_taken_once_dates_several_messages() -> None:
    # A broadcast's requests share one utc_now_iso() stamp (the pool client); without
    # one, each message is stamped as it is made.
    session = Session(b"key")
    stamp = utc_now_iso()
    first = session.message("apply_request", date=stamp)
    second = session.message("apply_request", date=stamp)
    assert first.header["date"] == second.header["date"] == stamp
    assert first.msg_id != second.msg_id
    assert session.message("x").header["date"] >= stamp


def test_made_here_knows_this_process_ids_only() -> None:
    from kernel.protocol._message import _id_prefix, made_here

    assert made_here(new_msg_id())
    assert not made_here(f"{uuid.uuid4().hex}_1")  # another process's
    assert not made_here(f"{_id_prefix}1")  # the prefix, then no separator
    assert not made_here("")
