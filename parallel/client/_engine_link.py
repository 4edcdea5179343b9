"""The client's connection to one engine: its shell, iopub and control sockets.

An engine is a kernel, so this is what ``kernel.client.KernelClient`` does for one kernel,
on plain sockets read by the client's :class:`~._pump.Pump` (no loop needed), with the
same pure :class:`~kernel.protocol.RequestTracker`: a request is finished when its reply
and the outputs the reply counts (metadata ``outputs``) are in, so every output it printed
has arrived by then. (An engine publishes no ``busy``/``idle`` for ``apply_request``.)

A client's own heartbeat watches the engines it waits for (:meth:`EngineLink.check`):
the hub reports lost engines too, but if the controller itself is gone nobody would, and
a wait must never outlast a dead peer. The kernel's heartbeat echoes from libzmq, with
the GIL released, so a busy engine answers; a dead or stopped one does not.

IOPub is a PUB socket: what it publishes before our subscription reaches it is lost. A
Loom engine greets each new subscriber with ``iopub_welcome`` (messaging spec 5.5), so
requests wait in :attr:`EngineLink._held` until the welcome arrives; none can lose an
output.

Shell goes through the engine's *direct shell* where it can (an engine on this host, of an
ipc cluster: ``_direct_link``, ``parallel/engine/_direct.py``): the same messages on a Unix
stream socket, without libzmq's I/O threads. Every shell request of this client goes the
same way, so the engine answers them in the order sent; if the stream fails, requests go
through ZeroMQ from then on, and the heartbeat tells whether the engine still lives.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from functools import partial

import zmq

from kernel.protocol import (
    ConnectionInfo,
    CurveKeys,
    ForeignOutput,
    Message,
    ProtocolError,
    RequestTracker,
    Session,
    TrackerEvent,
)
from kernel.protocol._freshness import address_to
from kernel.transport import RateLimitedLog
from kernel.transport._curve import connect_curve
from kernel.transport._frames import has_large_buffer

from .._errors import EngineError
from ..protocol._direct_frames import direct_path
from ._direct_link import DirectClosed, DirectLink, connect_direct
from ._pump import Pump
from ._send import SEND_WAIT, Unreachable, send_or_fail
from ._sequence import ReplySequence

__all__ = ["EngineLink"]

log = logging.getLogger("loom.parallel")

EventHandler = Callable[[int, TrackerEvent], None]
#: Told of requests whose replies cannot come back (engine id, msg ids, why).
LostHandler = Callable[[int, list[str], str], None]

#: While requests are pending, ping an engine's heartbeat this often (seconds) ...
HEARTBEAT_INTERVAL = 0.5
#: ... and count it lost after this long without an echo (the controller's grace, too).
HEARTBEAT_GRACE = 3.0


class EngineLink:
    """Sockets, tracker and pending sends for one engine; see the module docstring."""

    def __init__(
        self,
        engine_id: int,
        info: ConnectionInfo,
        session: Session,
        ctx: zmq.Context[zmq.Socket[bytes]],
        pump: Pump,
        on_event: EventHandler,
        instance: str = "",
    ) -> None:
        self.id = engine_id
        self.info = info
        #: The engine process's instance id, named in every request (replays, issue 12:
        #: another engine, or this one restarted, refuses them; ``_freshness``).
        self.instance = instance
        self._session = session
        self._pump = pump
        self._on_event = on_event
        # Only finished requests matter here (Client._on_event): no ReplyReceived events.
        self.tracker = RequestTracker(session.session_id, report_replies=False)
        #: The numbers of the engine's replies to this client (``_sequence``).
        self.sequence = ReplySequence()
        self._rejected = RateLimitedLog(log)
        #: Requests sent before iopub was known to be subscribed (with their frames, if
        #: given); ``None`` once it is.
        self._held: list[tuple[str, Message, list[bytes] | None]] | None = []
        self.sockets = {
            "shell": _socket(ctx, zmq.DEALER, info.url("shell"), info.curve),
            "control": _socket(ctx, zmq.DEALER, info.url("control"), info.curve),
            "iopub": _socket(ctx, zmq.SUB, info.url("iopub"), info.curve),
        }
        for channel, sock in self.sockets.items():
            pump.add(sock, partial(self._on_frames, channel))
        self._hb = _socket(ctx, zmq.DEALER, info.url("hb"), info.curve)
        self._hb.setsockopt(zmq.IMMEDIATE, 1)  # a ping to a vanished engine fails at once
        pump.add(self._hb, self._on_echo)
        #: The engine's direct shell, if it has one and we reach it (module docstring).
        self.direct: DirectLink | None = None
        if info.transport == "ipc":
            self.direct = connect_direct(direct_path(info.ip))
            if self.direct is not None:
                pump.add_stream(self.direct, partial(self._on_frames, "shell"), self._direct_gone)
        #: When we last pinged, and when the oldest ping still without an echo went out
        #: (monotonic seconds; ``None``: every ping was answered).
        self._last_ping = 0.0
        self._unanswered_since: float | None = None
        #: Pings sent and echoes received (in order: one DEALER, one echo per ping).
        self._pings = self._echoes = 0
        #: Requests that went over a direct shell that broke, and the ping whose echo
        #: proves the engine lives on (their replies then have no way back: ``check``).
        self._orphans: list[str] = []
        self._orphan_ping = 0
        #: Called with those requests, once the engine is known to live (set by the client).
        self.on_lost: LostHandler = lambda engine_id, msg_ids, why: None
        self._orphan_reason = ""

    def address(self, message: Message) -> None:
        """Name this engine's process in ``message``'s header (before it is signed)."""
        address_to(message.header, self.instance)

    def send(
        self,
        channel: str,
        message: Message,
        *,
        expects_idle: bool = True,
        frames: list[bytes] | None = None,
        zero_copy: bool | None = None,
    ) -> None:
        """Send a request on ``channel`` and track it (sent at once, or once subscribed).

        ``frames``: the message already serialized, after :meth:`address` (a broadcast's
        requests are serialized together, ``Session.serialize_many``), its buffers as
        they are (not copied) if any is large (``has_large_buffer``); ``zero_copy``:
        whether one is, if the caller knows (a broadcast asks once for all engines)."""
        if frames is None:
            self.address(message)
        # Engines count each reply's outputs: a request is done without waiting for idle.
        self.tracker.track(message.msg_id, channel, expects_idle=expects_idle, counts_outputs=True)
        if self._held is not None:
            self._held.append((channel, message, frames))
            return
        try:
            self._send_now(channel, message, frames, zero_copy=zero_copy)
        except Unreachable as exc:  # not sent: not pending either
            self.tracker.forget(message.msg_id)
            raise EngineError(
                f"cannot reach engine {self.id} at {self.info.url(channel)}: {exc.reason}",
                self.id,
            ) from None

    def _send_now(
        self,
        channel: str,
        message: Message,
        frames: list[bytes] | None,
        wait: float = SEND_WAIT,
        zero_copy: bool | None = None,
    ) -> None:
        """Send now, never blocking in libzmq; :class:`Unreachable` if no connection
        takes the message within ``wait`` seconds (``_send``)."""
        sock = self.sockets[channel]
        if zero_copy is None:
            zero_copy = bool(message.buffers) and has_large_buffer(message.buffers)
        if frames is None:  # zero-copy: large buffers as they are (MessageSocket.send)
            frames = self._session.serialize(message, copy_buffers=not zero_copy)
        direct = self.direct if channel == "shell" else None
        if direct is not None:
            try:
                direct.send(frames)
                self._pump.sent_on_stream(direct)
                return
            except DirectClosed as exc:  # not sent at all: ZeroMQ takes it, an orphan it is not
                self._direct_gone(str(exc), resent=message.msg_id)
        try:
            send_or_fail(sock, frames, zero_copy=zero_copy, wait=wait)
        finally:
            self._pump.sent_on(sock)  # a send (or the wait's poll) may take an edge

    def _direct_gone(self, reason: str, resent: str | None = None) -> None:
        """The direct shell failed: shell goes through ZeroMQ from now on.

        Its requests still pending can get no reply: if the engine died, its heartbeat
        goes silent and the engine is lost as always; if it echoes a ping sent now, it
        lives, and those requests are failed (``check``) rather than left to wait forever.
        """
        direct, self.direct = self.direct, None
        if direct is None:
            return
        self._pump.remove_stream(direct)
        direct.close()
        # Not orphans: held requests (they go by ZeroMQ) and ``resent``, the one whose send
        # found the stream gone (nothing of it was written; ZeroMQ takes it).
        spared = {message.msg_id for _, message, _ in self._held or ()} | {resent}
        orphans = [m for m in self.tracker.pending_on("shell") if m not in spared]
        if orphans:
            log.info("engine %d: %s; shell goes through ZeroMQ now", self.id, reason)
            self._orphans += orphans
            self._orphan_reason = reason
            self._orphan_ping = self._ping()

    def _ping(self) -> int:
        """Ping the engine's heartbeat now; the ping's number (0: it could not be sent)."""
        self._last_ping = time.monotonic()
        try:
            self._hb.send(b"ping", zmq.DONTWAIT)
        except zmq.Again:
            return 0
        finally:
            self._pump.sent_on(self._hb)
        self._pings += 1
        return self._pings

    def _on_frames(self, channel: str, frames: list[bytes]) -> None:
        try:
            message = self._session.deserialize(frames).message
        except ProtocolError as exc:
            self._rejected.warning(
                "engine %d: dropped invalid %s message: %s", self.id, channel, exc
            )
            return
        if channel == "shell" and not self._in_sequence(message):
            return
        for event in self.tracker.receive(channel, message):
            if isinstance(event, ForeignOutput) and message.msg_type == "iopub_welcome":
                self._subscribed()
                continue
            self._on_event(self.id, event)

    def _in_sequence(self, message: Message) -> bool:
        """Judge a shell reply's number (``_sequence``): False for one seen already
        (dropped); a gap is reported at once, as a warning: its replies were lost."""
        before = self.sequence.last
        verdict = self.sequence.observe(message.metadata.get("loom_seq"))
        if verdict == "gap":
            lost = self.sequence.last - before - 1
            text = (
                f"engine {self.id}: {lost} repl{'ies' if lost > 1 else 'y'} lost before reply"
                f" {self.sequence.last} (a gap in its reply numbers); requests still pending"
                " on it may never be answered"
            )
            log.warning("%s", text)
            warnings.warn(text, RuntimeWarning, stacklevel=1)
        return verdict != "duplicate"

    def _subscribed(self) -> None:
        held, self._held = self._held, None
        for channel, message, frames in held or ():
            try:  # in a handler: no waiting here
                self._send_now(channel, message, frames, wait=0.0)
            except Unreachable as exc:
                # Left pending: the heartbeat (no connection either) loses the engine
                # within HEARTBEAT_GRACE, and that fails the request with EngineError.
                self._rejected.warning(
                    "engine %d: a held %s request was not sent: %s", self.id, channel, exc
                )

    def check(self, now: float) -> bool:
        """Ping the heartbeat if requests are pending; False once it has been silent for
        ``HEARTBEAT_GRACE`` seconds while they were (the engine is dead or stopped)."""
        if self._orphans and self._orphan_ping and self._echoes >= self._orphan_ping:
            self._fail_orphans()
        if not self.tracker.pending:
            self._unanswered_since = None  # only silence while we wait counts
            return True
        if now - self._last_ping >= HEARTBEAT_INTERVAL:
            if self._unanswered_since is None:
                self._unanswered_since = now
            sent = self._ping()
            if self._orphans and not self._orphan_ping:
                self._orphan_ping = sent
        return self._unanswered_since is None or now - self._unanswered_since < HEARTBEAT_GRACE

    def _fail_orphans(self) -> None:
        orphans = [m for m in self._orphans if self.tracker.is_pending(m)]
        self._orphans, self._orphan_ping = [], 0
        for msg_id in orphans:
            self.tracker.forget(msg_id)
        self.sequence.excuse(len(orphans))
        if orphans:
            self.on_lost(self.id, orphans, self._orphan_reason)

    def _on_echo(self, frames: list[bytes]) -> None:
        self._unanswered_since = None
        self._echoes += 1

    def close(self) -> None:
        if self.direct is not None:
            self._pump.remove_stream(self.direct)
            self.direct.close()
            self.direct = None
        for sock in [*self.sockets.values(), self._hb]:
            self._pump.remove(sock)
            sock.close(linger=0)


def _socket(
    ctx: zmq.Context[zmq.Socket[bytes]],
    kind: int,
    url: str | None,
    curve: CurveKeys | None = None,
) -> zmq.Socket[bytes]:
    """A client socket connected to ``url`` (None: not yet), a Curve client with ``curve``."""
    sock: zmq.Socket[bytes] = zmq.Socket(ctx, kind)
    sock.linger = 0
    # No high-water marks: everything queued answers a request this client sent, and a
    # dropped reply or output would leave a request pending forever.
    sock.sndhwm = 0
    sock.rcvhwm = 0
    if kind == zmq.SUB:
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    if curve is not None:
        connect_curve(sock, curve)
    if url is not None:
        sock.connect(url)
    return sock
