"""CurveZMQ on our sockets: keys, the ZAP allow-list, and telling a refused peer why.

Theory of operation
-------------------
A listening socket with Curve (:func:`serve_curve`) encrypts and authenticates every
connection; libzmq asks the ZAP handler of its *context* (a REP socket bound at
``inproc://zeromq.zap.01``) whether the client's public key may connect. Without a
handler bound libzmq admits every Curve client, so :func:`zap_handler` binds one per
context *before* any Curve socket of that context is bound, and the allow-list is
per ZAP domain (a cluster's server key): a process serving two clusters admits each
one's clients only to that cluster's sockets.

Nobody but a loop the process already has answers the handler (no thread of our
own): the controller's asyncio loop (``loop.add_reader`` on :attr:`ZapHandler.fd`),
an engine's or kernel's ``loom-io`` thread (polled beside control). Each answer is
:func:`zap_reply`, a pure function of the request frames and the allow-list.

A connecting socket (:func:`connect_curve`) learns how its handshake ended from its
monitor (:class:`HandshakeWatch`): a NULL peer meeting a Curve server, a wrong server
key and a key not on the allow-list each end in a distinct libzmq event within
milliseconds, which becomes an "authentication failed: ..." message instead of a wait
that would last forever (libzmq retries silently).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Mapping
from typing import Any

import zmq
import zmq.utils.z85

from kernel.protocol import CurveKeys

from ._ratelimit import RateLimitedLog

__all__ = [
    "ZAP_ENDPOINT",
    "HandshakeWatch",
    "ZapHandler",
    "connect_curve",
    "curve_domain",
    "new_curve_keys",
    "serve_curve",
    "zap_handler",
    "zap_reply",
]

log = logging.getLogger("loom.transport")

#: Where libzmq sends its ZAP requests (RFC 27), per context.
ZAP_ENDPOINT = "inproc://zeromq.zap.01"

#: A domain's allow-list: these client public keys (Z85), or None: any Curve client.
AllowList = frozenset[bytes] | None


def new_curve_keys() -> CurveKeys:
    """A fresh server keypair and client keypair (libzmq's ``zmq_curve_keypair``)."""
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    return CurveKeys(server_public, server_secret, client_public, client_secret)


def curve_domain(keys: CurveKeys) -> str:
    """The ZAP domain of the sockets that present ``keys``' server key."""
    return "loom-" + keys.server_public.decode("ascii")


def allow_list(keys: CurveKeys) -> AllowList:
    """Who may connect: the client key if the keys name one, else any Curve client
    (a Jupyter kernel: jupyter_client connects with a fresh keypair each time)."""
    return frozenset({keys.client_public}) if keys.client_public else None


def serve_curve(sock: zmq.Socket[Any], keys: CurveKeys) -> None:
    """Make ``sock`` (not yet bound) a Curve server admitting ``keys``' allow-list.

    :func:`zap_handler` for the socket's context must exist first (else libzmq admits
    anyone holding the server's public key).
    """
    if not keys.can_serve:
        raise ValueError("serving Curve needs the server's secret key")
    sock.curve_server = True
    sock.curve_secretkey = keys.server_secret
    sock.curve_publickey = keys.server_public
    sock.zap_domain = curve_domain(keys).encode("ascii")


def connect_curve(sock: zmq.Socket[Any], keys: CurveKeys) -> None:
    """Make ``sock`` (not yet connected) a Curve client of ``keys``' server."""
    if keys.client_public:
        public, secret = keys.client_public, keys.client_secret
    else:
        public, secret = zmq.curve_keypair()
    sock.curve_serverkey = keys.server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret


def zap_reply(frames: list[bytes], allowed: Mapping[bytes, AllowList]) -> list[bytes]:
    """The ZAP reply (RFC 27) to one request: ``200`` for a Curve client whose key is
    allowed in the request's domain, ``400`` for anything else (another mechanism, an
    unknown domain, a key not on the list, a malformed request)."""
    if len(frames) < 6:
        return [b"1.0", frames[1] if len(frames) > 1 else b"", b"500", b"malformed", b"", b""]
    version, request_id, domain, _address, _identity, mechanism, *credentials = frames
    if version != b"1.0":
        return [b"1.0", request_id, b"500", b"unsupported ZAP version", b"", b""]
    if domain not in allowed:
        return [version, request_id, b"400", b"unknown domain", b"", b""]
    if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
        return [version, request_id, b"400", b"Curve required", b"", b""]
    client = zmq.utils.z85.encode(credentials[0])
    keys = allowed[domain]
    if keys is not None and client not in keys:
        return [version, request_id, b"400", b"key not allowed", b"", b""]
    return [version, request_id, b"200", b"OK", client, b""]


class ZapHandler:
    """A context's ZAP socket and its allow-list per domain; answered by its owner's loop
    (:meth:`answer` never blocks)."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.socket: zmq.Socket[bytes] = zmq.Socket(ctx, zmq.REP)
        self.socket.linger = 0
        self.socket.bind(ZAP_ENDPOINT)
        self.allowed: dict[bytes, AllowList] = {}
        self.refused = 0
        self._log = RateLimitedLog(log)

    @property
    def fd(self) -> int:
        """The socket's descriptor, edge-triggered like every zmq descriptor."""
        return int(self.socket.getsockopt(zmq.FD))

    def allow(self, keys: CurveKeys) -> None:
        self.allowed[curve_domain(keys).encode("ascii")] = allow_list(keys)

    def forget(self, keys: CurveKeys) -> None:
        self.allowed.pop(curve_domain(keys).encode("ascii"), None)

    def answer(self) -> int:
        """Answer every request waiting (until ``ZMQ_EVENTS`` shows none); how many."""
        answered = 0
        while int(self.socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            reply = zap_reply(frames, self.allowed)
            if reply[2] != b"200":
                self.refused += 1
                address = frames[3].decode("utf-8", "replace") if len(frames) > 3 else "?"
                self._log.warning(
                    "refused a connection from %s: %s", address, reply[3].decode("ascii")
                )
            self.socket.send_multipart(reply)
            answered += 1
        return answered

    def close(self) -> None:
        self.socket.close(linger=0)


_handlers: dict[int, tuple[zmq.Context[zmq.Socket[bytes]], ZapHandler]] = {}


def zap_handler(ctx: zmq.Context[zmq.Socket[bytes]]) -> ZapHandler:
    """The ZAP handler of ``ctx``, bound on first use (one per context, as libzmq has)."""
    entry = _handlers.get(id(ctx))
    if entry is None or entry[0] is not ctx or entry[0].closed:
        entry = (ctx, ZapHandler(ctx))
        _handlers[id(ctx)] = entry
    return entry[1]


_FAILURES: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the peer refused this side's Curve key "
    "(it is not on the cluster's allow-list)",
    # The peer closed the handshake: libzmq cannot tell more. A wrong server key ends so;
    # plaintext against Curve too, when the close comes before the peer's greeting.
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the peer ended the handshake (this side's "
    "server key is not the peer's, or one side uses CurveZMQ and the other plaintext)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the peers' security mechanisms differ "
    "(one side uses CurveZMQ, the other plaintext)",
}
_counter = itertools.count()


class HandshakeWatch:
    """How a connecting socket's handshakes end, from its monitor; see the module
    docstring. Poll :attr:`socket` beside the watched one, then call :meth:`read`."""

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self._sock = sock
        events = zmq.EVENT_HANDSHAKE_SUCCEEDED
        for event in _FAILURES:
            events |= event
        addr = f"inproc://loom-handshake-{os.getpid()}-{next(_counter)}"
        sock.monitor(addr, events)
        # A plain socket even on an asyncio context (get_monitor_socket would make an
        # asyncio one, whose NOBLOCK receives are futures): read() never waits.
        self.socket: zmq.Socket[bytes] = zmq.Socket(sock.context, zmq.PAIR)
        self.socket.linger = 0
        self.socket.connect(addr)
        self.succeeded = False
        #: "authentication failed: <why>" once a handshake failed; None otherwise.
        self.failure: str | None = None

    def read(self) -> None:
        """Take every event already reported (never waits)."""
        while True:
            try:
                self.feed(self.socket.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return

    def feed(self, frames: list[bytes]) -> None:
        """Take one monitor event (its frames), read by whoever polls :attr:`socket`."""
        event = int.from_bytes(frames[0][:2], "little") if frames and frames[0] else 0
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.succeeded = True
        elif event in _FAILURES and self.failure is None:  # the first says why
            self.failure = f"authentication failed: {_FAILURES[event]}"

    def close(self) -> None:
        """Stop monitoring (the watched socket stays open)."""
        if not self._sock.closed:
            self._sock.disable_monitor()
        self.socket.close(linger=0)

    async def failed(self) -> str:
        """Wait on the running loop until a handshake fails; the failure. (Cancel it once
        the peer answered: a success does not end it.)"""
        import asyncio  # here: a kernel binds Curve sockets before asyncio may be imported

        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        fd = int(self.socket.getsockopt(zmq.FD))
        loop.add_reader(fd, readable.set)
        try:
            while True:
                self.read()  # the descriptor is edge-triggered: drain, then wait
                if self.failure is not None:
                    return self.failure
                await readable.wait()
                readable.clear()
        finally:
            loop.remove_reader(fd)
