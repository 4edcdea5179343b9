"""Garbage, forged and tampered messages on the hub and on engines: dropped or refused,
and the cluster keeps serving. Proof of "dropped": a valid request sent after the bad
one on the same socket is answered, and nothing was answered for the bad one."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq
from _cluster_support import isolate, running_cluster

from kernel.protocol import Message, Session
from parallel.error import SerializationError
from parallel.protocol import serialize_call

TIMEOUT_MS = 20_000


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def _dealer(url: str) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(url)
    return sock


def _replies_until(sock: zmq.Socket[bytes], session: Session, msg_id: str) -> list[Message]:
    """The replies read until the one to ``msg_id`` (inclusive)."""
    replies: list[Message] = []
    while True:
        assert sock.poll(TIMEOUT_MS), "no reply"
        replies.append(session.deserialize(sock.recv_multipart()).message)
        if replies[-1].parent_id == msg_id:
            return replies


def _parents(replies: list[Message]) -> list[str | None]:
    return [reply.parent_id for reply in replies]


def test_garbage_and_forged_hub_messages_are_dropped_and_the_hub_serves_on() -> None:
    with running_cluster(1) as (_, rc):
        # On ipc the transport authenticates the engines: the client does not check their
        # replies' signatures again (it still checks the hub's, and every peer checks its).
        assert rc.info.authenticates_peers
        assert not rc._link_session.check_signatures
        assert rc.session.check_signatures
        hub = _dealer(rc.info.hub_url)
        try:
            good = Session(rc.info.key)
            forged = Session(b"not the key")
            hub.send_multipart([b"garbage"])
            hub.send_multipart([b"<IDS|MSG>", b"sig", b"{", b"}", b"{}", b"{}"])
            bad = forged.message("connection_request", {})
            hub.send_multipart(forged.serialize(bad))
            ok = good.message("connection_request", {})
            hub.send_multipart(good.serialize(ok))
            assert _parents(_replies_until(hub, good, ok.msg_id)) == [ok.msg_id]
            replayed = good.serialize(ok)
            hub.send_multipart(replayed)  # the same signature again: a replay
            again = good.message("connection_request", {})
            hub.send_multipart(good.serialize(again))
            assert _parents(_replies_until(hub, good, again.msg_id)) == [again.msg_id]
        finally:
            hub.close()
        assert rc[0].apply_sync(lambda: "serving") == "serving"


def test_an_engine_refuses_tampered_buffers_and_forged_requests_and_lives_on() -> None:
    # On tcp anyone on the host can connect: buffers carry a digest (on ipc, only this
    # user can reach the socket files, and the transport is the authentication).
    with running_cluster(1, transport="tcp") as (_, rc):
        assert not rc.info.authenticates_peers
        assert rc._link_session.check_signatures
        record = rc._records[0]
        info = rc.info.engine_connection(record.address, record.ports)
        shell = _dealer(info.url("shell"))
        try:
            session = Session(rc.info.key)
            buffers = serialize_call(len, ([1, 2],), {})
            metadata = {"buffers_hmac": session.signer.sign_buffers(buffers)}
            tampered = [*buffers[:-1], buffers[-1] + b"x"]
            request = session.message("apply_request", {}, metadata=metadata, buffers=tampered)
            shell.send_multipart(session.serialize(request))
            [refused] = _replies_until(shell, session, request.msg_id)
            assert refused.content["status"] == "error"
            assert refused.content["ename"] == "SignatureError"
            assert "do not match" in refused.content["evalue"]
            forged = Session(b"wrong key").message("apply_request", {}, buffers=buffers)
            shell.send_multipart(Session(b"wrong key").serialize(forged))
            fine = session.message("apply_request", {}, metadata=metadata, buffers=buffers)
            shell.send_multipart(session.serialize(fine))
            [answered] = _replies_until(shell, session, fine.msg_id)  # the forged one: none
            assert answered.content["status"] == "ok"
        finally:
            shell.close()
        assert rc[0].apply_sync(lambda: 3) == 3


def test_an_argument_larger_than_the_engines_limit_is_refused_at_once_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # libzmq drops a connection that sends a frame over ZMQ_MAXMSGSIZE without a word, and
    # the request would never be answered: the engine tells its limit, the client checks.
    # Below 64 KiB everything is copied: no zero-copy send, so no pyzmq thread here.
    monkeypatch.setenv("LOOM_MAX_MESSAGE_SIZE", "48K")
    with running_cluster(1) as (_, rc):
        assert rc._records[0].max_message_size == 48 << 10
        view = rc[0]
        with pytest.raises(SerializationError, match=r"larger than engine 0 accepts.*LOOM_MAX"):
            view.push({"big": b"x" * (60 << 10)}, block=True)
        view.push({"small": b"x" * (40 << 10)}, block=True)
        assert view.apply_sync(len, b"y" * (40 << 10)) == 40 << 10
        assert view.pull("small", block=True) == b"x" * (40 << 10)
