"""The replay rules of kernel/protocol/_freshness.py as a Session applies them (pure, no
sockets): a request naming another instance is refused, one naming this instance is
taken whatever its date, one naming none falls back to the date check (issue 12)."""

from __future__ import annotations

import pytest

from kernel.protocol import ReplayedMessage, Session, SignatureError
from kernel.protocol._freshness import TARGET_KEY, address_to, refusal

KEY = b"cluster-key"
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
BEFORE = "2027-01-15T07:59:00Z"
AFTER = "2027-01-15T08:01:00Z"


def test_refusal_decides_by_the_named_instance_first_then_the_date() -> None:
    mine = "a" * 32
    other = "b" * 32

    def judge(header: dict[str, object], instance: str | None = mine) -> str | None:
        return refusal(header, not_before=START, instance=instance)

    assert judge({TARGET_KEY: mine, "date": BEFORE}) is None  # named: no clock involved
    assert "not this one" in (judge({TARGET_KEY: other, "date": AFTER}) or "")
    assert "older than this process's start" in (judge({"date": BEFORE}) or "")
    assert judge({"date": AFTER}) is None  # a Jupyter client's fresh request
    assert judge({"date": "not a date"}) is None  # undecidable: taken, as for a kernel
    # A process without an instance (a kernel) does not read names: the date decides.
    assert judge({TARGET_KEY: other, "date": AFTER}, instance=None) is None
    assert judge({TARGET_KEY: other, "date": BEFORE}, instance=None) is not None
    assert refusal({TARGET_KEY: other}, not_before=None, instance=None) is None
    # The hub (strict=False): another instance's name is judged by the date alone.
    assert (
        refusal({TARGET_KEY: other, "date": AFTER}, not_before=START, instance=mine, strict=False)
        is None
    )
    assert refusal(
        {TARGET_KEY: other, "date": BEFORE}, not_before=START, instance=mine, strict=False
    )
    assert (
        refusal({TARGET_KEY: mine, "date": BEFORE}, not_before=START, instance=mine, strict=False)
        is None
    )


def test_address_to_names_an_instance_and_leaves_an_unknown_one_out() -> None:
    header: dict[str, object] = {}
    address_to(header, "")
    assert header == {}
    address_to(header, "abc")
    assert header == {TARGET_KEY: "abc"}


def test_a_session_refuses_a_signed_request_for_another_instance() -> None:
    client = Session(KEY)
    engine0, engine1 = Session(KEY), Session(KEY)
    engine0.instance, engine1.instance = "zero", "one"
    message = client.message("apply_request", {})
    address_to(message.header, "zero")
    frames = client.serialize(message)
    assert engine0.deserialize(frames).message.msg_id == message.msg_id
    with pytest.raises(ReplayedMessage, match="'zero', not this one"):
        engine1.deserialize(frames)
    # The name is signed: a replayer cannot change it without breaking the signature.
    forged = [frames[0], frames[1], frames[2].replace(b'"zero"', b'"one"'), *frames[3:]]
    with pytest.raises(SignatureError):
        engine1.fork().deserialize(forged)
    # A fork (a channel's session) keeps the instance.
    assert engine1.fork().instance == "one"
