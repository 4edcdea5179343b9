"""The pool client's sends never block in libzmq (``parallel/client/_send.py``).

A DEALER whose Curve handshake was refused has no connection and never gets one again;
a plain send on it blocks forever. Under load a client holding the wrong keys could send
its first ``connection_request`` after the refusal (the console hung the same way, see
tests/transport/test_socket_send_waits.py): it hung instead of being told. Here that
order is forced: the client's controller link (made just before that send) waits until
the hub has refused the handshake. With blocking sends both tests below hang (the
pytest timeout fails them); now each is told "authentication failed" at once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from _cluster_support import _kill

from kernel.protocol import CurveKeys
from kernel.transport import shared_context
from kernel.transport._curve import HandshakeWatch, new_curve_keys
from parallel import Client, Cluster, ClusterUnavailable
from parallel.client import _pool_client
from parallel.client._controller_link import ControllerLink
from parallel.client._engine_link import _socket
from parallel.client._send import Unreachable, send_or_fail
from parallel.protocol._controller_info import ControllerInfo

pytestmark = pytest.mark.timeout(60)

#: The handshake takes milliseconds; this bounds the waits for it.
HANDSHAKE_WITHIN = 10.0


@pytest.fixture(scope="module")
def curve_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerInfo]:
    """A controller (no engines) bound on loopback with Curve."""
    runtime = tmp_path_factory.mktemp("runtime")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
        cluster = Cluster(n=0, transport="tcp", curve=True)
        pid = None
        try:
            rc = cluster.start_and_connect_sync(timeout=60)
            assert cluster._process is not None
            pid = cluster._process.pid
            info = rc.info
            rc.close()
            assert info.curve is not None
            yield info
        finally:
            cluster.stop_cluster_sync()
            if pid is not None:
                _kill(pid)


def _stranger(info: ControllerInfo) -> CurveKeys:
    """The cluster's server key with a keypair not on its allow-list."""
    assert info.curve is not None
    other = new_curve_keys()
    return dataclasses.replace(
        info.curve.client_view(),
        client_public=other.client_public,
        client_secret=other.client_secret,
    )


def _wait_refused(watch: HandshakeWatch, sock: zmq.Socket[bytes]) -> str:
    """Wait until the hub refused ``sock``'s handshake and libzmq dropped its connection
    (just after it reports the refusal): from then on a blocking send blocks forever."""
    poller = zmq.Poller()
    poller.register(watch.socket, zmq.POLLIN)
    deadline = time.monotonic() + HANDSHAKE_WITHIN
    while watch.failure is None and time.monotonic() < deadline:
        poller.poll(100)
        watch.read()
    assert watch.failure is not None, "the hub never refused the stranger's handshake"
    while int(sock.get(zmq.EVENTS)) & zmq.POLLOUT:  # no event says so: look every 10 ms
        assert time.monotonic() < deadline, "the refused connection was never dropped"
        time.sleep(0.01)
    return watch.failure


def test_a_send_on_a_refused_connection_fails_with_the_reason_not_a_hang(
    curve_cluster: ControllerInfo,
) -> None:
    sock = _socket(shared_context(), zmq.DEALER, None, _stranger(curve_cluster))  # type: ignore[arg-type]
    watch = HandshakeWatch(sock)
    sock.connect(curve_cluster.hub_url)
    try:
        refusal = _wait_refused(watch, sock)
        started = time.monotonic()
        with pytest.raises(Unreachable, match=r"^authentication failed") as told:
            send_or_fail(sock, [b"hello"], refused=lambda: watch.failure)
        assert told.value.reason == refusal
        assert time.monotonic() - started < 1.0  # the refusal is known: no waiting
        # Nobody to say why: a bounded wait, then the likely cause.
        with pytest.raises(Unreachable, match=r"no connection took a message within 0\.3 s"):
            send_or_fail(sock, [b"hello"], wait=0.3)
        with pytest.raises(Unreachable):  # large buffers, zero-copy, alike
            send_or_fail(sock, [b"x" * (1 << 20)], zero_copy=True, wait=0.1)
    finally:
        watch.close()
        sock.close(linger=0)


def test_a_client_with_a_wrong_key_sending_after_the_refusal_is_told(
    curve_cluster: ControllerInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = dataclasses.replace(curve_cluster, curve=_stranger(curve_cluster)).write(
        tmp_path / "stranger.json"
    )

    class SlowToSend(ControllerLink):
        """The order a loaded machine can give: the hub refuses the client's handshake
        before the client sends its first request to the hub."""

        def __init__(self, client: Any) -> None:
            super().__init__(client)
            assert client._handshake is not None
            _wait_refused(client._handshake, client._hub)

    monkeypatch.setattr(_pool_client, "ControllerLink", SlowToSend)
    started = time.monotonic()
    with pytest.raises(ClusterUnavailable, match=r"^authentication failed") as told:
        Client(path, timeout=30)
    assert time.monotonic() - started < HANDSHAKE_WITHIN + 2  # not the 30 s timeout
    assert "use the cluster's own file" in str(told.value)
