"""Property tests: whatever bytes arrive, deserialize returns a Received or raises ProtocolError.

A receiver catches ProtocolError and drops the message; any other exception
would escape a socket reader, so it is a bug.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel.protocol import DELIMITER, Message, ProtocolError, Received, Session

KEY = b"fuzz-key"
KEYS = [pytest.param(KEY, id="keyed"), pytest.param(b"", id="unsigned")]

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
#: For tests run once per key: 300 examples per test function in all.
FUZZ_PER_KEY = settings(FUZZ, max_examples=150)

# -- strategies ------------------------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_json_objects = st.dictionaries(st.text(max_size=6), _json_values, max_size=4)


def _dump(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


_headers = st.fixed_dictionaries(
    {},
    optional={
        "msg_id": st.text(max_size=8) | _json_scalars,
        "msg_type": st.text(max_size=8) | _json_scalars,
        "session": st.text(max_size=8),
    },
)

#: Bytes that are often almost JSON: valid documents, truncated ones, and raw noise.
_jsonish_bytes = st.one_of(
    _json_values.map(_dump),
    _json_objects.map(_dump),
    _headers.map(_dump),
    _json_objects.map(_dump).flatmap(
        lambda b: st.integers(0, len(b)).map(lambda i: b[:i])  # truncations
    ),
    st.sampled_from([b"{", b"}", b"[]", b"{}", b"null", b"NaN", b'"\\ud800"', b"\xef\xbb\xbf{}"]),
    st.binary(max_size=40),
)

_frame = st.one_of(st.just(DELIMITER), st.just(b""), _jsonish_bytes, st.binary(max_size=24))
_frame_lists = st.lists(_frame, max_size=12)


def _framed(parts: list[bytes]) -> st.SearchStrategy[list[bytes]]:
    """Identities, delimiter, signature-ish frame, then ``parts``."""
    return st.tuples(
        st.lists(st.binary(max_size=8) | st.just(DELIMITER), max_size=2),
        st.binary(max_size=70),
    ).map(lambda t: [*t[0], DELIMITER, t[1], *parts])


_structured = st.lists(_jsonish_bytes, min_size=0, max_size=7).flatmap(_framed)


def _check(session: Session, frames: list[bytes]) -> Received | None:
    """The property: a Received (with sane contents) or a ProtocolError, nothing else."""
    try:
        received = session.deserialize(frames)
    except ProtocolError:
        return None
    assert isinstance(received, Received)
    assert isinstance(received.message, Message)
    assert isinstance(received.message.msg_id, str)
    assert isinstance(received.message.msg_type, str)
    assert DELIMITER not in received.identities
    for part in (
        received.message.header,
        received.message.parent_header,
        received.message.metadata,
        received.message.content,
    ):
        assert isinstance(part, dict)
    return received


# -- arbitrary frames ------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
@FUZZ_PER_KEY
@given(frames=_frame_lists)
def test_arbitrary_frame_lists(key: bytes, frames: list[bytes]) -> None:
    _check(Session(key), frames)


@pytest.mark.parametrize("key", KEYS)
@FUZZ_PER_KEY
@given(frames=_structured)
def test_delimited_jsonish_frames(key: bytes, frames: list[bytes]) -> None:
    _check(Session(key), frames)


@FUZZ
@given(frames=st.lists(st.binary(max_size=64), max_size=10))
def test_raw_binary_frames_unsigned(frames: list[bytes]) -> None:
    _check(Session(b""), frames)


@FUZZ
@given(parts=st.lists(_jsonish_bytes, min_size=4, max_size=6))
def test_signed_garbage_is_parsed_safely(parts: list[bytes]) -> None:
    # Correctly signed but arbitrary JSON frames: exercises parsing behind the signature check.
    sender, receiver = Session(KEY), Session(KEY)
    frames = [DELIMITER, sender.signer.sign(parts[:4]), *parts]
    received = _check(receiver, frames)
    if received is not None:
        assert received.message.buffers == parts[4:]


# -- mutations of valid messages -------------------------------------------

Mutation = Callable[[list[bytes]], list[bytes]]


def _flip_bit(frame: int, bit: int) -> Mutation:
    def apply(frames: list[bytes]) -> list[bytes]:
        i = frame % len(frames)
        if not frames[i]:
            return frames
        data = bytearray(frames[i])
        pos = bit % (len(data) * 8)
        data[pos // 8] ^= 1 << (pos % 8)
        return [*frames[:i], bytes(data), *frames[i + 1 :]]

    return apply


def _drop(frame: int) -> Mutation:
    return lambda frames: [f for j, f in enumerate(frames) if j != frame % len(frames)]


def _duplicate(frame: int) -> Mutation:
    def apply(frames: list[bytes]) -> list[bytes]:
        i = frame % len(frames)
        return [*frames[: i + 1], frames[i], *frames[i + 1 :]]

    return apply


def _swap(a: int, b: int) -> Mutation:
    def apply(frames: list[bytes]) -> list[bytes]:
        out = list(frames)
        i, j = a % len(out), b % len(out)
        out[i], out[j] = out[j], out[i]
        return out

    return apply


def _truncate(frame: int, length: int) -> Mutation:
    def apply(frames: list[bytes]) -> list[bytes]:
        i = frame % len(frames)
        return [*frames[:i], frames[i][: length % (len(frames[i]) + 1)], *frames[i + 1 :]]

    return apply


def _insert(frame: int, data: bytes) -> Mutation:
    return lambda frames: [
        *frames[: frame % (len(frames) + 1)],
        data,
        *frames[frame % (len(frames) + 1) :],
    ]


_index = st.integers(0, 64)
_mutation = st.one_of(
    st.builds(_flip_bit, _index, st.integers(0, 10_000)),
    st.builds(_drop, _index),
    st.builds(_duplicate, _index),
    st.builds(_swap, _index, _index),
    st.builds(_truncate, _index, st.integers(0, 500)),
    st.builds(_insert, _index, _frame),
)

_messages = st.builds(
    lambda msg_type, content, idents, buffers: (msg_type, content, idents, buffers),
    st.text(min_size=1, max_size=10),
    _json_objects,
    st.lists(st.binary(max_size=6), max_size=2),
    st.lists(st.binary(max_size=6), max_size=2),
)


@pytest.mark.parametrize("key", KEYS)
@FUZZ_PER_KEY
@given(spec=_messages, mutations=st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_valid_messages(
    key: bytes,
    spec: tuple[str, dict[str, object], list[bytes], list[bytes]],
    mutations: list[Mutation],
) -> None:
    msg_type, content, idents, buffers = spec
    sender, receiver = Session(key), Session(key)
    frames = sender.serialize(sender.message(msg_type, content, buffers=buffers), idents)
    original = list(frames)
    for mutate in mutations:
        frames = mutate(frames) if frames else frames
    received = _check(receiver, frames)
    if key and received is not None and frames[: len(original)] != original:
        # A keyed receiver only accepts what the sender signed: the JSON frames are intact.
        assert received.message.header == sender.deserialize(original).message.header


@pytest.mark.parametrize("key", KEYS)
@FUZZ_PER_KEY
@given(spec=_messages)
def test_unmutated_messages_round_trip(
    key: bytes, spec: tuple[str, dict[str, object], list[bytes], list[bytes]]
) -> None:
    msg_type, content, idents, buffers = spec
    sender, receiver = Session(key), Session(key)
    msg = sender.message(msg_type, content, buffers=buffers)
    received = receiver.deserialize(sender.serialize(msg, idents))
    assert received.identities == idents
    assert received.message.msg_type == msg_type
    assert received.message.buffers == buffers
    # NaN != NaN, so compare the re-encoded JSON instead of the values.
    assert _dump(received.message.content) == _dump(content)


_SHARED_SENDER = Session(KEY)
_SHARED_RECEIVER = Session(KEY, replay_history=16)
_SHARED_FRAMES = _SHARED_SENDER.serialize(
    _SHARED_SENDER.message("execute_request", {"code": "1"}, buffers=[b"b"]), [b"id"]
)


@FUZZ
@given(mutations=st.lists(_mutation, min_size=1, max_size=3))
def test_shared_receiver_sees_replays_as_protocol_errors(mutations: list[Mutation]) -> None:
    # One long-lived receiver (as in a kernel): replays and near-replays must stay ProtocolErrors.
    frames = _SHARED_FRAMES
    for mutate in mutations:
        frames = mutate(frames) if frames else frames
    _check(_SHARED_RECEIVER, frames)
    # Whatever the first delivery did, a second identical delivery is never accepted.
    with pytest.raises(ProtocolError):
        _SHARED_RECEIVER.deserialize(frames)
