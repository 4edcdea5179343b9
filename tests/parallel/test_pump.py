"""The client's ``Pump`` on real ZeroMQ sockets: blocking waits on the descriptors' epoll
read what arrives, never lose a message whose edge a send consumed, and ``drain(only)``
reads only the sockets named."""

from __future__ import annotations

import select
from collections.abc import Iterator

import pytest
import zmq

from kernel.transport._frames import has_input
from parallel.client._pump import Pump

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pairs() -> Iterator[list[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]]:
    """Three (client DEALER, peer ROUTER) pairs over inproc, each with the peer's view of
    the client's identity learnt."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    made = []
    for index in range(3):
        peer: zmq.Socket[bytes] = ctx.socket(zmq.ROUTER)
        peer.bind(f"inproc://pump-{index}")
        client: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
        client.setsockopt(zmq.IDENTITY, b"c")
        client.connect(f"inproc://pump-{index}")
        made.append((client, peer))
    yield made
    for client, peer in made:
        client.close(linger=0)
        peer.close(linger=0)
    ctx.term()


def _pump_with(
    pairs: list[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]],
) -> tuple[Pump, dict[int, list[list[bytes]]]]:
    pump = Pump()
    got: dict[int, list[list[bytes]]] = {i: [] for i in range(len(pairs))}
    for index, (client, _) in enumerate(pairs):
        pump.add(client, got[index].append)
    return pump, got


def test_a_blocking_wait_reads_what_arrives_on_any_socket(
    pairs: list[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]],
) -> None:
    pump, got = _pump_with(pairs)
    pump.drain()  # nothing yet; every socket looked at once
    pairs[1][1].send_multipart([b"c", b"hello"])
    assert pump.pump_until(lambda: bool(got[1]), 10.0)
    assert got == {0: [], 1: [[b"hello"]], 2: []}
    for _, peer in pairs:
        peer.send_multipart([b"c", b"x"])
        peer.send_multipart([b"c", b"y"])
    assert pump.pump_until(lambda: all(len(got[i]) == 2 + (i == 1) for i in got), 10.0)
    pump.close()


def test_input_whose_edge_a_send_consumed_is_read_after_sent_on(
    pairs: list[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]],
) -> None:
    pump, got = _pump_with(pairs)
    pump.drain()
    client, peer = pairs[0]
    peer.send_multipart([b"c", b"reply"])
    while not has_input(client):  # reads ZMQ_EVENTS: the descriptor's edge is now spent
        pass
    pump.sent_on(client)  # as every sender does after a send
    assert pump.pump(None) == 1  # no edge left, yet read at once, without waiting
    assert got[0] == [[b"reply"]]
    pump.close()


def test_a_missed_edge_costs_one_wait_never_a_hang(
    pairs: list[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]],
) -> None:
    pump, got = _pump_with(pairs)
    pump.drain()
    client, peer = pairs[2]
    peer.send_multipart([b"c", b"late"])
    while not has_input(client):  # the edge is consumed and nobody calls sent_on
        pass
    assert pump.pump(0.05) == 1  # the wait times out, then every socket is read
    assert got[2] == [[b"late"]]
    pump.close()


def test_drain_of_named_sockets_reads_only_those(
    pairs: list[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]],
) -> None:
    pump, got = _pump_with(pairs)
    for _, peer in pairs:
        peer.send_multipart([b"c", b"m"])
    named = pairs[1][0]
    while not has_input(named):  # arrived (inproc: at once), read by nobody yet
        pass
    assert pump.drain(named) == 1
    assert got[1] == [[b"m"]]
    assert got[0] == []
    assert got[2] == []
    assert pump.pump_until(lambda: bool(got[0]) and bool(got[2]), 10.0)
    pump.remove(pairs[0][0])  # removed sockets are not read any more
    pairs[0][1].send_multipart([b"c", b"ignored"])
    pairs[2][1].send_multipart([b"c", b"read"])
    assert pump.pump_until(lambda: len(got[2]) == 2, 10.0)
    assert got[0] == [[b"m"]]
    pump.close()


def test_read_ready_reads_named_sockets_whose_descriptor_fired_or_that_a_send_left_unsure(
    pairs: list[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]],
) -> None:
    pump, got = _pump_with(pairs)
    pump.drain()  # every socket looked at: none unsure
    assert pump.read_ready(pairs[0][0], pairs[1][0]) == 0
    for _, peer in pairs:
        peer.send_multipart([b"c", b"m"])
    for client, _ in pairs:  # the descriptor fires (without reading ZMQ_EVENTS)
        assert select.select([int(client.getsockopt(zmq.FD))], [], [], 10)[0]
    assert pump.read_ready(pairs[0][0], pairs[1][0]) == 2
    assert got == {0: [[b"m"]], 1: [[b"m"]], 2: []}  # the third was not named
    client, peer = pairs[0]
    peer.send_multipart([b"c", b"after a send"])
    while not has_input(client):  # its edge is spent, as a send can spend it
        pass
    pump.sent_on(client)
    assert pump.read_ready(client) == 1
    assert got[0] == [[b"m"], [b"after a send"]]
    assert pump.pump_until(lambda: bool(got[2]), 10.0)
    pump.close()


def test_a_descriptor_that_fires_without_a_message_reads_nothing_and_fires_again() -> None:
    # A fired socket is read without asking ZMQ_EVENTS first (_drain_one): an edge with
    # no message behind it (here a peer going away) costs one zmq.Again, and the next
    # message still fires the descriptor.
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    client: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
    client.setsockopt(zmq.IDENTITY, b"c")
    peers: list[zmq.Socket[bytes]] = []
    for index in range(2):
        peer: zmq.Socket[bytes] = ctx.socket(zmq.ROUTER)
        peer.bind(f"inproc://fired-{index}")
        client.connect(f"inproc://fired-{index}")
        peers.append(peer)
    got: list[list[bytes]] = []
    pump = Pump()
    pump.add(client, got.append)
    try:
        pump.drain()
        peers[0].close(linger=0)  # the client's pipe to it ends: a command, no message
        fd = int(client.getsockopt(zmq.FD))
        assert select.select([fd], [], [], 10)[0]
        assert pump.pump(0.0) == 0
        assert got == []
        peers[1].send_multipart([b"c", b"after"])
        assert pump.pump_until(lambda: bool(got), 10.0)
        assert got == [[b"after"]]
    finally:
        pump.close()
        client.close(linger=0)
        peers[1].close(linger=0)
        ctx.term()
