"""The engine's own connection to the hub: controller watch and task records.

Theory of operation
-------------------
One thread, ``loom-hub-link``, owns one DEALER to the hub (a ZeroMQ socket belongs to one
thread) and does two things off the engine's main thread:

1. **Controller watch** (``_controller_watch``): an ``engine_ping_request`` every second;
   the hub answers whether it knows the engine as live, and a hub that does not (it was
   restarted with ``--restore``, or it declared the engine lost during a network
   partition) makes the engine register again with the same uuid, which gives it its id
   back. A controller silent for the grace (``LOOM_CONTROLLER_GRACE``, 300 s by default)
   ends the engine cleanly (``on_give_up``).
2. **Records** (issue 13, results that survive): the engine's shell handler hands each
   task's request (when it starts) and its reply (when it is answered) to :meth:`record`,
   which only appends to a deque; this thread sends what accumulated as one
   ``record_request`` (a batch). When to send is :class:`~._record_window.RecordWindow`'s
   decision: the first record the thread sees opens a window (``LOOM_RECORD_WINDOW``,
   100 ms by default), and what came within it goes as one message; a ``sync`` record,
   a batch past 256 records or 1 MiB of buffers, or a :meth:`flush` (the engine's loop
   calls it ``LOOM_RECORD_QUIET``, 25 ms, after a lone reply; a stream's replies are left to
   the window's end: ``QuietFlush``) sends at once. A send at a
   window's end opens the next window at once (it *ticks*): while replies keep coming,
   the thread wakes once per window, at its end, and no record wakes it; a window that
   ends with nothing held closes. Only then does a reply's record wake the sleeping
   thread, and only after the reply left (the recorder defers the wake with
   ``call_soon``); a task's start record waits for it, or for the next ping, within a
   second, so a running task is not disturbed. A batch travels as
   rows (:func:`encode_batch`: one per task, its JSON columns encoded and buffers packed
   here) in one frame, which the hub stores without decoding.

   Batches are numbered; the hub commits them in order. A small batch asks for no reply:
   the hub's answer to the next ping says which of this link's batches it committed
   (:class:`~._record_window.Unacked`), so such a batch costs the hub no send and this
   thread no wake. A batch with ``sync`` records or large buffers asks for its own
   ``record_reply``. What is not confirmed is kept and sent again after a
   re-registration, so a controller killed and restored loses none of it (the hub
   stores a record by msg_id: a second copy replaces the first). ``durability="sync"``:
   the handler waits for its reply's commit before the reply goes (``done``).

The main thread never blocks on the hub in the default mode: :meth:`record` is an append
and, at most once per window, one ``eventfd`` write to wake this thread.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import struct
import threading
import time
from collections.abc import Callable, Sequence
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

import zmq

from kernel.protocol import JSONDict, ProtocolError, Session
from kernel.protocol._freshness import address_to
from kernel.transport._curve import connect_curve
from kernel.transport._frames import has_input, has_large_buffer, send_frames

from ..protocol._controller_info import ControllerInfo
from ..protocol._hub_limits import record_budget
from ._controller_watch import Action, ControllerWatch, WatchConfig
from ._record_fit import ROW_OVERHEAD, fit_batch
from ._record_window import RecordWindow, Unacked, WindowConfig

__all__ = [
    "HubLink",
    "encode_batch",
    "pack_buffers",
    "watch_config_from_env",
    "window_config_from_env",
]

log = logging.getLogger("loom.engine")

#: Records kept unconfirmed at most (a controller gone for long); the oldest go first.
MAX_UNACKED = 100_000

Buffer = bytes | memoryview
#: JSON text as ``JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)``
#: writes it, from C encoder state built once: ``JSONEncoder.encode`` builds it again at
#: every call, ~40% of encoding a record's small header or metadata (measured: 10 -> 6 us).
#: No check for circular references: records hold what JSON messages held.
_json_text: Callable[[object], str] = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, default=str
).encode
if c_make_encoder is not None:  # CPython's _json (the pure-Python json has none)
    _c_encode = c_make_encoder(None, str, encode_basestring, None, ":", ",", False, False, True)
    _json_text = lambda value: "".join(_c_encode(value, 0))  # noqa: E731
#: How a one-buffer blob starts (``pack_buffers``): the usual case, packed without a format.
_ONE = struct.Struct("<IQ")
#: Seconds an engine serves on without its controller before it exits.
DEFAULT_GRACE = 300.0
Done = Callable[[], None]
#: One queued record: its fields, its buffers, and what to call once it is committed.
Item = tuple[JSONDict, Sequence[Buffer], Done | None]


def watch_config_from_env() -> WatchConfig:
    """The watch settings; ``LOOM_CONTROLLER_GRACE`` (seconds) overrides the grace."""
    grace = os.environ.get("LOOM_CONTROLLER_GRACE", "")
    try:
        value = float(grace) if grace else DEFAULT_GRACE
    except ValueError:
        value = DEFAULT_GRACE
    return WatchConfig(grace=max(value, 0.5))


def window_config_from_env() -> WindowConfig:
    """The record window: ``LOOM_RECORD_WINDOW`` (seconds, 0.1 by default) and
    ``LOOM_RECORD_QUIET`` (0.025) override its length and its quiet time."""
    return WindowConfig(
        window=_seconds("LOOM_RECORD_WINDOW", WindowConfig.window),
        quiet=_seconds("LOOM_RECORD_QUIET", WindowConfig.quiet),
    )


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "")
    try:
        value = float(text) if text else default
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 600.0:  # nan too
        log.warning("%s=%r is not seconds from 0 to 600; using %g", name, text, default)
        value = default
    return value


def _nbytes(buffers: Sequence[Buffer]) -> int:
    return sum(memoryview(b).nbytes for b in buffers)


class HubLink:
    """The engine's hub connection thread; see the module docstring."""

    def __init__(
        self,
        controller: ControllerInfo,
        registration: JSONDict,
        engine_id: int,
        *,
        durability: str = "async",
        config: WatchConfig | None = None,
        window: WindowConfig | None = None,
    ) -> None:
        self.controller = controller
        #: The content of this engine's ``registration_request`` (sent again as is).
        self.registration = dict(registration)
        self.engine_id = engine_id
        #: ``"async"``, ``"sync"`` or ``"off"`` (the hub said so at registration;
        #: ``LOOM_RECORDS=off`` in the engine's environment: no records, for measuring
        #: their cost or for work whose arguments must not be copied anywhere).
        self.durability = "off" if os.environ.get("LOOM_RECORDS") == "off" else durability
        self.config = config or watch_config_from_env()
        self.window = window or window_config_from_env()
        self.on_give_up: Callable[[str], None] = lambda reason: None
        self._session = Session(controller.key, controller.signature_scheme)
        #: Each record with its buffers' size (counted once, by the recording thread).
        self._queue: collections.deque[tuple[Item, int]] = collections.deque()
        # Each counter has one writer (``_in``: the recording thread, ``_out``: this
        # link's), so none loses an update; what is queued is their difference.
        self._bytes_in = self._bytes_out = 0
        self._sync_in = self._sync_out = 0
        self._asked_in = self._asked_out = 0  # flush() calls, and those this thread saw
        #: The thread sleeps with no window open: a reply's record must wake it.
        self._idle = False
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._closing = False
        self._pending = RecordWindow(self.window)
        #: Names this link's batch numbers to the hub (a replacement engine has the same
        #: uuid and numbers from 1 again).
        self._token = os.urandom(8).hex()
        self._unacked: Unacked[Item] = Unacked(MAX_UNACKED)
        #: Batches that asked for their own reply: msg_id -> number.
        self._asked: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="loom-hub-link", daemon=True)

    @property
    def recording(self) -> bool:
        return self.durability != "off"

    @property
    def sleeping(self) -> bool:
        """The thread sleeps with no window open (a record for it should :meth:`wake` it)."""
        return self._idle

    def start(self) -> None:
        self._thread.start()

    def record(
        self,
        record: JSONDict,
        buffers: Sequence[Buffer],
        done: Done | None = None,
        *,
        wake: bool = True,
        nbytes: int | None = None,
    ) -> None:
        """Queue one record for the hub (from one thread: the engine's main thread).

        ``done`` is called (from this link's thread) once the hub committed it; such a
        record is sent at once. ``wake=False``: the record goes when a window the thread
        has open closes, or at the next ping (within a second), so a running task is not
        disturbed by this thread waking (a task's start record); the caller may
        :meth:`wake` it later instead (after the reply left). A full batch (count or
        bytes) wakes the thread in any case. ``nbytes``: the buffers' size, if the caller
        knows it already."""
        size = _nbytes(buffers) if nbytes is None else nbytes
        self._queue.append(((record, buffers, done), size))
        self._bytes_in += size
        if done is not None:
            self._sync_in += 1
        config = self.window
        if (
            done is not None
            or len(self._queue) >= config.max_records
            or self._bytes_in - self._bytes_out >= config.max_bytes
        ):
            self._idle = False
            with contextlib.suppress(OSError):
                os.eventfd_write(self._wake, 1)
        elif wake:
            self.wake()

    def flush(self) -> None:
        """Send what is queued now (the engine went quiet: ``QuietFlush``); any thread."""
        self._asked_in += 1
        self._idle = False
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake, 1)

    def wake(self) -> None:
        """Wake the thread if it sleeps with no window open (queued records open one)."""
        if self._idle:
            self._idle = False
            with contextlib.suppress(OSError):
                os.eventfd_write(self._wake, 1)

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake, 1)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)

    # -- the thread -----------------------------------------------------------------

    def _run(self) -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.sndhwm = 0
        if self.controller.curve is not None:
            connect_curve(sock, self.controller.curve)
        sock.connect(self.controller.hub_url)
        watch = ControllerWatch(self.config, time.monotonic())
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        try:
            while not self._closing:
                now = time.monotonic()
                for action in watch.tick(now):
                    if not self._act(action, sock, watch):
                        return
                timeout = watch.next_due(now)
                self._idle = True
                asked = self._asked_in
                if not self._queue:  # a flush() of records already sent: nothing to send
                    self._asked_out = asked  # (read before the queue: a newer one stays)
                    tick = self._pending.due(now, 0, 0)
                    if tick < math.inf:  # a stream's window: its records wait for its end,
                        self._idle = False  # and wake nobody (a record queued just before
                        # this line may still wake it: a harmless early look)
                        timeout = min(timeout, tick)
                else:  # queued records: this thread comes back for them anyway
                    self._idle = False
                    if not watch.silent and not watch.registering:
                        urgent = (
                            self._sync_in != self._sync_out or self._asked_in != self._asked_out
                        )
                        due = self._pending.due(
                            now, len(self._queue), self._bytes_in - self._bytes_out, urgent=urgent
                        )
                        if due <= 0.0:
                            self._flush(sock)
                            # A window's end or a full batch: the next window opens now
                            # (ticking); asked for or urgent: it closes.
                            self._pending.sent(None if urgent else now)
                            continue
                        timeout = min(timeout, due)
                events = dict(poller.poll(math.ceil(timeout * 1000)))
                if self._wake in events:
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(self._wake)
                while has_input(sock):  # (Socket.poll builds a Poller per call)
                    self._received(sock, watch)
            if self._queue and not watch.silent and not watch.registering:
                self._flush(sock)  # a clean stop: what the window held still goes
                sock.close(linger=1000)
        except Exception:  # never take the engine down: it serves without records
            log.exception("the engine's hub link failed")
        finally:
            sock.close(linger=0)  # the eventfd stays: record() may still write to it

    def _act(self, action: Action, sock: zmq.Socket[bytes], watch: ControllerWatch) -> bool:
        url = self.controller.hub_url
        match action:
            case Action.PING:
                # ``link``: the hub's answer says which of this link's batches it has.
                content = {"uuid": self.registration["uuid"], "id": self.engine_id}
                self._send(sock, "engine_ping_request", {**content, "link": self._token})
            case Action.REGISTER:
                content = {**self.registration, "id": self.engine_id}
                self._send(sock, "registration_request", content)
            case Action.SILENT:
                log.warning(
                    "engine %d: the controller at %s is not answering; serving on, exiting"
                    " after %g s of silence",
                    self.engine_id,
                    url,
                    self.config.grace,
                )
            case Action.BACK:
                log.warning("engine %d: the controller at %s answers again", self.engine_id, url)
            case Action.GIVE_UP:
                reason = f"the controller at {url} was gone for {self.config.grace:g} s"
                log.warning("engine %d: %s; exiting", self.engine_id, reason)
                self.on_give_up(reason)
                return False
        return True

    def _send(
        self,
        sock: zmq.Socket[bytes],
        msg_type: str,
        content: JSONDict,
        buffers: Sequence[Buffer] = (),
    ) -> str:
        message = self._session.message(msg_type, content, buffers=list(buffers))  # type: ignore[arg-type]
        address_to(message.header, self.controller.instance)  # the hub's start (replays)
        frames = self._session.serialize(message)
        if has_large_buffer(buffers):  # zero-copy: the blob is not copied into libzmq
            sock.send_multipart(frames, copy=False)
        else:  # copied, without pyzmq's per-frame enum arithmetic (a batch's usual case)
            send_frames(sock, frames)
        return message.msg_id

    def _received(self, sock: zmq.Socket[bytes], watch: ControllerWatch) -> None:
        frames = sock.recv_multipart()
        try:
            reply = self._session.deserialize(frames).message
        except ProtocolError:
            return
        now = time.monotonic()
        content: dict[str, Any] = reply.content
        match reply.msg_type:
            case "engine_ping_reply":
                committed = content.get("records")  # [first, last] batch it committed
                if (
                    isinstance(committed, list)
                    and len(committed) == 2
                    and all(isinstance(n, int) for n in committed)
                ):
                    _confirmed(self._unacked.acked_range(committed[0], committed[1]))
                was_registering = watch.registering
                for action in watch.answered(now, registered=bool(content.get("registered"))):
                    self._act(action, sock, watch)
                if was_registering and not watch.registering:
                    self._resend(sock)
            case "registration_reply":
                if content.get("status") == "ok" and isinstance(content.get("id"), int):
                    if content["id"] != self.engine_id:
                        log.warning(
                            "engine %d registered again as engine %d", self.engine_id, content["id"]
                        )
                        self.engine_id = content["id"]
                    for action in watch.registered(now):
                        self._act(action, sock, watch)
                    log.warning("engine %d registered again", self.engine_id)
                    self._resend(sock)
            case "record_reply":
                seq = self._asked.pop(reply.parent_id or "", None)
                if seq is None:
                    return
                items = self._unacked.acked(seq)
                if content.get("status") != "ok":  # it will not be stored: waiting is no use
                    log.warning(
                        "engine %d: the hub refused %d records: %s",
                        self.engine_id,
                        len(items),
                        content.get("evalue", content),
                    )
                _confirmed(items)

    def _flush(self, sock: zmq.Socket[bytes]) -> None:
        self._asked_out = self._asked_in
        batch: list[Item] = []
        nbytes = synced = 0
        while self._queue:
            item, size = self._queue.popleft()
            batch.append(item)
            nbytes += size
            synced += item[2] is not None
        self._pending.sent()  # closed; the loop opens the next window if it ticks on
        self._bytes_out += nbytes
        self._sync_out += synced
        self._send_batch(sock, batch)

    def _send_batch(self, sock: zmq.Socket[bytes], batch: list[Item]) -> None:
        rows, frames = encode_batch(batch)
        # One frame for the whole batch (``sizes`` splits it): a frame costs each side
        # a few microseconds of Python, and a task has seven.
        blob = b"".join(frames)
        budget = record_budget(self.controller.max_message_size)
        if budget and len(blob) + ROW_OVERHEAD * len(rows) > budget:
            # Over the hub's frame limit, libzmq would drop the connection and the batch
            # (issue 12): sent as batches that fit, records too large alone slimmed.
            for part in fit_batch(batch, budget):
                self._send_batch(sock, part)
            return
        # Its own reply: sync records wait for it; large buffers are not kept unconfirmed.
        ask = any(done is not None for _, _, done in batch) or len(blob) >= self.window.max_bytes
        seq, dropped = self._unacked.add(batch)
        for old in dropped:
            log.warning(
                "engine %d: dropped %d unconfirmed records (limit %d)",
                self.engine_id,
                len(old),
                MAX_UNACKED,
            )
            _confirmed(old)  # a sync handler must not wait for them forever
        content = {
            "uuid": self.registration["uuid"],
            "id": self.engine_id,
            "link": self._token,
            "seq": seq,
            "ack": ask,
            "rows": rows,
            "sizes": [len(frame) for frame in frames],
        }
        if not self.controller.authenticates_peers:  # tcp without Curve: sign the frame too
            content["hmac"] = self._session.signer.sign_buffers([blob])
        msg_id = self._send(sock, "record_request", content, [blob])
        if ask:
            self._asked[msg_id] = seq

    def _resend(self, sock: zmq.Socket[bytes]) -> None:
        """After a re-registration: the hub may have lost what it did not confirm."""
        self._asked.clear()
        for batch in self._unacked.take_all():
            self._send_batch(sock, batch)


def encode_batch(batch: Sequence[Item]) -> tuple[list[list[Any]], list[bytes]]:
    """A batch's rows and frames as the hub stores them (``_records.rows_of``): one row
    per task, its start and reply records together when both are in the batch (the
    usual case), JSON columns encoded and buffers packed here, on this thread, so the
    hub's loop binds them as they come."""
    pairs: dict[str, list[Item | None]] = {}
    for item in batch:
        slot = pairs.setdefault(str(item[0].get("msg_id")), [None, None])
        slot[0 if item[0].get("kind") == "task" else 1] = item
    rows: list[list[Any]] = []
    frames: list[bytes] = []
    for msg_id, (task, result) in pairs.items():
        row: list[Any] = ["task" if result is None else "result" if task is None else "full"]
        row += [msg_id, None, None, None, None, None, None]
        if task is not None:
            fields, buffers, _ = task
            row[2:6] = [_text(fields.get(k)) for k in _TASK_FIELDS]
            frames += [_json(fields.get(k)) for k in ("header", "metadata", "content")]
            frames.append(pack_buffers(buffers))
        if result is not None:
            fields, buffers, _ = result
            row[6:8] = [_text(fields.get("completed")), _text(fields.get("status"))]
            frames += [_json(fields.get(k)) for k in ("result_content", "result_metadata")]
            frames.append(pack_buffers(buffers))
        rows.append(row)
    return rows, frames


_TASK_FIELDS = ("task_id", "submitted", "client_uuid", "started")


def _text(value: object) -> str | None:
    return value if value is None or isinstance(value, str) else str(value)


def _json(value: object) -> bytes:
    if not value:
        return b"{}"  # an apply_request's content, most metadata
    return _json_text(value).encode("utf-8", "surrogatepass")


def pack_buffers(buffers: Sequence[Buffer]) -> bytes:
    """Buffers as one blob, as the task database keeps them (``_db.unpack_buffers``
    reads it): a count, the lengths, then the bytes."""
    if len(buffers) == 1 and isinstance(buffers[0], bytes):  # a pickled call or result
        return _ONE.pack(1, len(buffers[0])) + buffers[0]
    views = [memoryview(b).cast("B") for b in buffers]
    head = struct.pack(f"<I{len(views)}Q", len(views), *(v.nbytes for v in views))
    return b"".join([head, *views])


def _confirmed(items: list[Item]) -> None:
    for _, _, done in items:
        if done is not None:
            done()
