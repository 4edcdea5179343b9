"""The direct shell (``parallel/engine/_direct.py``, ``parallel/client/_direct_link.py``):
a client on the engines' host sends shell requests over a Unix stream socket, without
libzmq; what it carries, what it refuses, and what happens when it goes away."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy
import pytest
from _cluster_support import isolate, main_function, module_cluster, running_cluster

import parallel
from kernel.protocol import Message, Session
from parallel.error import EngineError
from parallel.protocol._direct_frames import FrameDecoder, direct_path, encode
from parallel.protocol._serialize import serialize_call

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[parallel.Client]:
    # Everything over the wire, none through /dev/shm: large messages cross the stream.
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("LOOM_SHM", "off")
        with module_cluster(tmp_path_factory, "direct", 2) as client:
            yield client


#: How many direct connections an engine serves (run on the engine: by value, from __main__).
connections_on_engine = main_function(
    """
    def connections_on_engine():
        import gc
        from parallel.engine._direct import DirectShell
        [shell] = [o for o in gc.get_objects() if isinstance(o, DirectShell)]
        return len(shell._connections)
    """,
    "connections_on_engine",
)


def test_a_client_on_the_engines_host_uses_their_direct_shells(rc: parallel.Client) -> None:
    assert all(link.direct is not None for link in rc._links.values())
    assert rc[:].apply_sync(connections_on_engine) == [1, 1]
    ar = rc[:].execute("print('out', 7)")
    ar.get(timeout=30)
    assert ar.stdout == ["out 7\n", "out 7\n"]  # iopub stays on ZeroMQ, counted as before
    second = parallel.Client(rc.cluster_file)
    try:
        assert second[:].apply_sync(connections_on_engine) == [2, 2]  # one per client
    finally:
        second.close()
    deadline = time.monotonic() + 20
    while rc[:].apply_sync(connections_on_engine) != [1, 1]:  # the engine saw it close
        assert time.monotonic() < deadline, "an engine kept a closed client's connection"


def test_messages_larger_than_the_socket_buffers_cross_both_ways(rc: parallel.Client) -> None:
    array = numpy.arange(5_000_000, dtype="f8")  # 40 MB: many partial writes each way
    rc[:].push({"big": array}, block=True)
    total = main_function("def total():\n    return float(big.sum())", "total")
    assert rc[:].apply_sync(total) == [float(array.sum())] * 2
    pulled = rc[1].pull("big", block=True)
    assert isinstance(pulled, numpy.ndarray)
    assert numpy.array_equal(pulled, array)


def test_awaited_results_come_over_the_direct_shell(rc: parallel.Client) -> None:
    async def run() -> list[int]:
        ars = [rc[:].apply_async(pow, 2, i) for i in range(5)]
        results = [await ar for ar in ars]
        return [value for pair in results for value in pair]

    assert asyncio.run(run()) == [1, 1, 2, 2, 4, 4, 8, 8, 16, 16]


def _direct_socket(rc: parallel.Client, engine_id: int) -> socket.socket:
    record = rc._records[engine_id]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(direct_path(rc.info.engine_connection(record.address).ip))
    return sock


def _replies_until(sock: socket.socket, session: Session, msg_id: str) -> list[Message]:
    decoder, replies = FrameDecoder(), []
    while True:
        data = sock.recv(1 << 16)
        assert data, "the engine closed the connection"
        for frames in decoder.feed(data):
            replies.append(session.deserialize(frames).message)
            if replies[-1].parent_id == msg_id:
                return replies


def test_garbage_and_forged_requests_on_a_direct_shell_are_dropped(rc: parallel.Client) -> None:
    session = Session(rc.info.key)
    sock = _direct_socket(rc, 0)
    with sock:
        sock.sendall(b"\xff" * 64)  # no framing at all: the engine closes this stream
        assert sock.recv(10) == b""
    sock = _direct_socket(rc, 0)
    with sock:
        buffers = serialize_call(len, ([1, 2, 3],), {})
        forged = Session(b"wrong key").message("apply_request", {}, buffers=buffers)
        sock.sendall(b"".join(bytes(b) for b in encode(Session(b"wrong key").serialize(forged))))
        fine = session.message("apply_request", {}, buffers=buffers)
        sock.sendall(b"".join(bytes(b) for b in encode(session.serialize(fine))))
        [answered] = _replies_until(sock, session, fine.msg_id)  # the forged one: none
        assert answered.content["status"] == "ok"
    assert rc[0].apply_sync(lambda: 3) == 3


def test_loom_direct_off_keeps_a_client_on_zeromq(
    rc: parallel.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOM_DIRECT", "off")
    client = parallel.Client(rc.cluster_file)
    try:
        assert all(link.direct is None for link in client._links.values())
        assert client[:].apply_sync(pow, 3, 2) == [9, 9]
    finally:
        client.close()


#: Closes every direct connection of the engine it runs on, its own request's included.
close_direct_connections = main_function(
    """
    def close_direct_connections():
        import gc
        from parallel.engine._direct import DirectShell
        [shell] = [o for o in gc.get_objects() if isinstance(o, DirectShell)]
        for key in list(shell._connections):
            shell._close(key)
        return "closed"
    """,
    "close_direct_connections",
)


def test_a_request_whose_connection_broke_fails_and_the_engine_serves_on(
    rc: parallel.Client,
) -> None:
    # Last of the module's tests on ``rc``: its link to engine 0 uses ZeroMQ afterwards.
    # Failed once the heartbeat echoes (the engine lives), not left waiting for ever.
    with pytest.raises(EngineError, match=r"cannot come back .*the engine lives on"):
        rc[0].apply_sync(close_direct_connections)
    assert rc._links[0].direct is None
    assert rc[0].apply_sync(pow, 2, 3) == 8  # through the engine's ZeroMQ shell
    assert rc[:].apply_sync(pow, 3, 2) == [9, 9]


def test_an_engine_killed_mid_task_fails_it_and_the_others_serve_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate(monkeypatch, tmp_path)
    with running_cluster(2, restart_engines=False) as (_, client):
        assert client._links[0].direct is not None
        ar = client[0].apply_async(time.sleep, 60)
        client.wait_for_engines(2)
        os.kill(client._records[0].pid, signal.SIGKILL)
        with pytest.raises(EngineError, match="engine 0"):
            ar.get(timeout=30)
        assert client[1].apply_sync(pow, 2, 5) == 32
        gc.collect()


def test_the_engine_reads_its_peers_uid_from_the_connection() -> None:
    """Defence in depth: the socket file's directory is 0700 already, so a connection from
    another uid cannot be made in a test; what the check reads can."""
    from parallel.engine._direct import _peer_uid

    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert _peer_uid(left) == os.getuid()
