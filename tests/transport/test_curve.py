"""CurveZMQ: key files (0600 from their creation), the ZAP allow-list with real sockets,
and a refused peer told why at once (kernel/transport/_curve.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import select
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from kernel.protocol import ConnectionFileError, ConnectionInfo, CurveKeys, Session
from kernel.protocol._curve_keys import is_private_address
from kernel.transport import open_kernel_sockets
from kernel.transport._curve import (
    HandshakeWatch,
    ZapHandler,
    connect_curve,
    curve_domain,
    new_curve_keys,
    zap_reply,
)
from parallel.controller._security import plaintext_warning, wants_curve
from parallel.protocol._controller_info import ControllerInfo

pytestmark = pytest.mark.timeout(60)

KEYS = new_curve_keys()


# -- key material in files ------------------------------------------------------------


def test_curve_keys_round_trip_through_a_connection_file_in_jupyter_clients_names(
    tmp_path: Path,
) -> None:
    info = ConnectionInfo(shell_port=1, iopub_port=2, stdin_port=3, control_port=4, hb_port=5)
    info = dataclasses.replace(info, key=b"k", curve=KEYS)
    path = info.write(tmp_path / "kernel.json")
    data = json.loads(path.read_text())
    assert data["curve_publickey"] == KEYS.server_public.decode()  # as jupyter_client >= 8.10
    assert data["curve_secretkey"] == KEYS.server_secret.decode()
    assert data["loom_curve_client_publickey"] == KEYS.client_public.decode()
    assert ConnectionInfo.read(path).curve == KEYS
    plain = ConnectionInfo.read(dataclasses.replace(info, curve=None).write(tmp_path / "p.json"))
    assert plain.curve is None


def test_a_clients_view_holds_no_server_secret() -> None:
    view = KEYS.client_view()
    assert not view.can_serve
    assert "curve_secretkey" not in view.to_dict()
    assert view.client_secret == KEYS.client_secret


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"curve_publickey": "short"}, "40-character Z85"),
        ({"curve_publickey": 12}, "must be a string"),
        ({"curve_publickey": "a" * 39 + "~"}, "40-character Z85"),  # ~ is not Z85
        ({"loom_curve_client_publickey": "a" * 40}, "needs both its keys"),
    ],
)
def test_bad_curve_keys_in_a_file_are_one_line_errors(fields: dict[str, Any], message: str) -> None:
    data = {**ControllerInfo("c", b"k", hub_port=1, notify_port=2, curve=KEYS).to_dict()}
    data.pop("loom_curve_client_secretkey")
    data.pop("loom_curve_client_publickey")
    data.update(fields)
    with pytest.raises(ConnectionFileError, match=message):
        ControllerInfo.from_dict(data)


def test_the_cluster_file_with_its_keys_is_0600_from_the_moment_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A permissive umask must not matter, and there must be no moment at which the file
    # is readable by others while the keys are written (no chmod after the fact).
    modes: list[int] = []
    real_dump = json.dump

    def watching_dump(data: Any, fh: Any, **kwargs: Any) -> None:
        modes.append(stat.S_IMODE(os.fstat(fh.fileno()).st_mode))
        real_dump(data, fh, **kwargs)

    monkeypatch.setattr(json, "dump", watching_dump)  # the module writes with json.dump
    previous = os.umask(0)
    try:
        info = ControllerInfo("c1", b"k", hub_port=1, notify_port=2, curve=KEYS)
        path = info.write(tmp_path / "cluster.json")
    finally:
        os.umask(previous)
    assert modes == [0o600]  # already private when the first byte was written
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ControllerInfo.read(path).curve == KEYS


def test_an_engines_connection_info_carries_the_clusters_keys() -> None:
    info = ControllerInfo("c1", b"k", hub_port=1, notify_port=2, curve=KEYS)
    assert info.engine_connection("10.0.0.2").curve == KEYS
    assert info.authenticates_peers  # Curve authenticates: no per-buffer digest
    assert not dataclasses.replace(info, curve=None).authenticates_peers


# -- when Curve is on -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("transport", "ip", "curve", "expected"),
    [
        ("tcp", "127.0.0.1", None, False),
        ("tcp", "127.0.0.2", None, False),
        ("tcp", "::1", None, False),
        ("tcp", "localhost", None, False),
        ("ipc", "/tmp/x", None, False),
        ("tcp", "10.9.0.1", None, True),
        ("tcp", "0.0.0.0", None, True),
        ("tcp", "*", None, True),
        ("tcp", "node1.example", None, True),
        ("tcp", "10.9.0.1", False, False),  # --insecure-plaintext
        ("tcp", "127.0.0.1", True, True),  # --curve
        ("ipc", "/tmp/x", True, False),  # ipc: the 0700 directory already admits only us
    ],
)
def test_curve_is_on_by_default_exactly_off_loopback(
    transport: str, ip: str, curve: bool | None, expected: bool
) -> None:
    assert wants_curve(transport, ip, curve) is expected


def test_plaintext_off_loopback_warns_and_on_loopback_does_not() -> None:
    warning = plaintext_warning("tcp", "10.9.0.1", False)
    assert warning is not None
    assert "--insecure-plaintext" in warning
    assert "unencrypted" in warning
    assert plaintext_warning("tcp", "127.0.0.1", False) is None
    assert plaintext_warning("tcp", "10.9.0.1", True) is None
    assert is_private_address("tcp", "[::1]")


# -- the ZAP allow-list, pure ---------------------------------------------------------


def _request(domain: bytes, mechanism: bytes, *credentials: bytes) -> list[bytes]:
    return [b"1.0", b"7", domain, b"10.9.0.2", b"", mechanism, *credentials]


DOMAIN = curve_domain(KEYS).encode()
ALLOWED = {DOMAIN: frozenset({KEYS.client_public})}


def test_zap_admits_only_the_clusters_client_key() -> None:
    client_raw = zmq.utils.z85.decode(KEYS.client_public)
    ok = zap_reply(_request(DOMAIN, b"CURVE", client_raw), ALLOWED)
    assert ok[:3] == [b"1.0", b"7", b"200"]
    assert ok[4] == KEYS.client_public
    stranger = zmq.utils.z85.decode(zmq.curve_keypair()[0])
    assert zap_reply(_request(DOMAIN, b"CURVE", stranger), ALLOWED)[2] == b"400"
    assert zap_reply(_request(DOMAIN, b"NULL"), ALLOWED)[2] == b"400"
    assert zap_reply(_request(b"other", b"CURVE", client_raw), ALLOWED)[2] == b"400"
    assert zap_reply(_request(DOMAIN, b"CURVE", b"short"), ALLOWED)[2] == b"400"
    assert zap_reply([b"garbage"], ALLOWED)[2] == b"500"
    assert zap_reply([b"2.0", b"7", DOMAIN, b"", b"", b"CURVE", client_raw], ALLOWED)[2] == b"500"
    # A Jupyter kernel's keys name no client: any Curve client (jupyter_client's way).
    assert zap_reply(_request(DOMAIN, b"CURVE", stranger), {DOMAIN: None})[2] == b"200"


# -- the allow-list with real sockets: a kernel's five sockets ------------------------


@pytest.fixture(scope="module")
def kernel_sockets() -> Iterator[tuple[ConnectionInfo, ZapHandler, zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    info = ConnectionInfo(key=b"secret", curve=KEYS)
    sockets = open_kernel_sockets(info, ctx)
    assert sockets.zap is not None
    try:
        yield sockets.info, sockets.zap, sockets["shell"]
    finally:
        sockets.close(linger=0)
        sockets.zap.close()
        ctx.term()


def _handshake(
    zap: ZapHandler, info: ConnectionInfo, keys: CurveKeys | None, channel: str = "shell"
) -> tuple[zmq.Socket[bytes], HandshakeWatch]:
    """Connect with ``keys`` (None: plaintext), answering ZAP here, until the handshake
    ends one way or the other (at most 5 s: it takes milliseconds)."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    if keys is not None:
        connect_curve(sock, keys)
    watch = HandshakeWatch(sock)
    sock.connect(info.url(channel))
    poller = zmq.Poller()
    poller.register(zap.socket, zmq.POLLIN)
    poller.register(watch.socket, zmq.POLLIN)
    deadline = time.monotonic() + 5
    while not (watch.succeeded or watch.failure) and time.monotonic() < deadline:
        poller.poll(100)
        zap.answer()
        watch.read()
    return sock, watch


def _received(shell: zmq.Socket[bytes], zap: ZapHandler, sock: zmq.Socket[bytes]) -> bool:
    session = Session(b"secret")
    # A DEALER without a peer whose handshake succeeded has nowhere to put it (Again).
    with contextlib.suppress(zmq.Again):
        sock.send_multipart(
            session.serialize(session.message("kernel_info_request", {})), zmq.NOBLOCK
        )
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        zap.answer()
        if shell.poll(50):
            shell.recv_multipart()
            return True
    return False


def test_the_clusters_client_key_gets_through(
    kernel_sockets: tuple[ConnectionInfo, ZapHandler, zmq.Socket[bytes]],
) -> None:
    info, zap, shell = kernel_sockets
    for channel in ("shell", "control", "stdin", "hb"):
        sock, watch = _handshake(zap, info, KEYS.client_view(), channel)
        try:
            assert watch.succeeded, (channel, watch.failure)
            if channel == "shell":
                assert _received(shell, zap, sock)
        finally:
            watch.close()
            sock.close()


@pytest.mark.parametrize(
    ("peer", "why"),
    [
        ("plaintext", "plaintext"),
        ("wrong server key", "server key"),
        ("random keypair", "not on the cluster's allow-list"),
    ],
)
def test_an_unauthorised_peer_gets_nothing_and_is_told_at_once(
    kernel_sockets: tuple[ConnectionInfo, ZapHandler, zmq.Socket[bytes]], peer: str, why: str
) -> None:
    info, zap, shell = kernel_sockets
    other = new_curve_keys()
    keys = {
        "plaintext": None,
        "wrong server key": dataclasses.replace(
            KEYS.client_view(), server_public=other.server_public
        ),
        "random keypair": dataclasses.replace(
            KEYS.client_view(), client_public=other.client_public, client_secret=other.client_secret
        ),
    }[peer]
    sock, watch = _handshake(zap, info, keys)  # gives up after 5 s: told within that
    try:
        assert watch.failure is not None
        assert watch.failure.startswith("authentication failed")
        assert why in watch.failure
        assert not watch.succeeded
        assert not _received(shell, zap, sock)  # the kernel got nothing
    finally:
        watch.close()
        sock.close()


def test_a_kernel_without_the_server_secret_cannot_serve_curve() -> None:
    info = ConnectionInfo(key=b"k", curve=KEYS.client_view())
    with pytest.raises(ValueError, match="server's secret key"):
        open_kernel_sockets(info, zmq.Context.instance())


class _FlippingRelay:
    """A TCP relay between a client and ``port``, driven by :meth:`pump` (no thread):
    once armed, it flips one byte in the middle of the next large chunk the client sends."""

    def __init__(self, port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = port
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.armed = False
        self.flipped = False

    def pump(self, seconds: float) -> None:
        readers = [self.listener] + [s for pair in self.pairs for s in pair]
        ready, _, _ = select.select(readers, [], [], seconds)
        for sock in ready:
            if sock is self.listener:
                client, _ = self.listener.accept()
                self.pairs.append((client, socket.create_connection(("127.0.0.1", self.target))))
                continue
            for client, server in self.pairs:
                if sock in (client, server):
                    data = sock.recv(1 << 20)
                    peer = server if sock is client else client
                    if not data:
                        client.close()
                        server.close()
                        self.pairs.remove((client, server))
                        break
                    if sock is client and self.armed and len(data) > 1000:
                        middle = len(data) // 2
                        data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
                        self.armed, self.flipped = False, True
                    peer.sendall(data)
                    break

    def close(self) -> None:
        for pair in self.pairs:
            for sock in pair:
                sock.close()
        self.listener.close()


def test_a_buffer_changed_on_the_wire_never_arrives_under_curve(
    kernel_sockets: tuple[ConnectionInfo, ZapHandler, zmq.Socket[bytes]],
) -> None:
    # Curve authenticates every frame (Poly1305): a changed byte ends the connection before
    # a message exists, which is why buffers need no HMAC of their own under Curve.
    info, zap, shell = kernel_sockets
    relay = _FlippingRelay(info.shell_port)
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    connect_curve(sock, KEYS.client_view())
    watch = HandshakeWatch(sock)
    try:
        sock.connect(f"tcp://127.0.0.1:{relay.port}")
        deadline = time.monotonic() + 10
        while not watch.succeeded and time.monotonic() < deadline:
            relay.pump(0.02)
            zap.answer()
            watch.read()
        assert watch.succeeded
        session = Session(b"secret")
        buffer = b"B" * 50_000
        intact = session.message("apply_request", {}, buffers=[buffer])
        sock.send_multipart(session.serialize(intact))
        received: list[list[bytes]] = []
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            relay.pump(0.02)
            zap.answer()
            if shell.poll(0):
                received.append(shell.recv_multipart())
        assert received
        assert received[0][-1] == buffer
        relay.armed = True
        tampered = session.message("apply_request", {}, buffers=[buffer])
        sock.send_multipart(session.serialize(tampered))
        deadline = time.monotonic() + 2  # it would arrive within milliseconds
        while time.monotonic() < deadline:
            relay.pump(0.02)
            zap.answer()
            assert not shell.poll(0), "a frame changed on the wire was delivered"
        assert relay.flipped
    finally:
        watch.close()
        sock.close()
        relay.close()


def test_curve_asked_for_on_ipc_is_a_one_line_error() -> None:
    from parallel import Cluster

    with pytest.raises(ValueError, match="curve=True needs transport='tcp'"):
        Cluster(n=1, curve=True)  # local engines default to ipc
    Cluster(n=1, curve=True, transport="tcp")  # only checks: starts nothing


def test_a_kernel_client_with_a_refused_key_is_told_at_once_not_after_its_timeout(
    kernel_sockets: tuple[ConnectionInfo, ZapHandler, zmq.Socket[bytes]],
) -> None:
    # What `loom console --existing FILE` prints for an engine file with a foreign key.
    from kernel.client import KernelError, connect_client

    info, zap, _ = kernel_sockets
    other = new_curve_keys()
    stranger = dataclasses.replace(
        KEYS.client_view(), client_public=other.client_public, client_secret=other.client_secret
    )

    async def attach() -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(zap.fd, zap.answer)  # the kernel's loom-io would answer it
        loop.call_soon(zap.answer)
        try:
            async with connect_client(dataclasses.replace(info, curve=stranger), ready_timeout=30):
                pytest.fail("a refused key got a kernel")
        finally:
            loop.remove_reader(zap.fd)

    with pytest.raises(KernelError, match=r"authentication failed: .*allow-list"):
        asyncio.run(asyncio.wait_for(attach(), 20))  # far below ready_timeout: told at once
