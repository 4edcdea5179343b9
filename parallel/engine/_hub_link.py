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
   which only appends to a deque; this thread sends them to the hub in batches
   (``record_request``). A reply's record wakes it, and it waits ``FLUSH_DELAY`` (5 ms)
   for more before sending; a task's start record does not wake it (it goes with the
   next batch, or with the next ping, within a second), so a running task is not
   disturbed. The hub answers once it committed the
   batch; a batch not yet answered is kept and sent again after a re-registration, so
   a controller killed and restored loses none of them (the hub stores a record by
   msg_id: a second copy replaces the first). ``durability="sync"``: the handler waits
   for the commit before its reply goes (``record(..., done=...)``), and the batch is
   flushed at once.

The main thread never blocks on the hub in the default mode: :meth:`record` is an append
and, when this thread sleeps, one ``eventfd`` write to wake it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from kernel.protocol import JSONDict, ProtocolError, Session
from kernel.protocol._freshness import address_to
from kernel.transport._curve import connect_curve

from ..protocol._controller_info import ControllerInfo
from ._controller_watch import Action, ControllerWatch, WatchConfig

__all__ = ["FLUSH_DELAY", "HubLink", "watch_config_from_env"]

log = logging.getLogger("loom.engine")

#: After the record that woke the link, wait this long for more before sending (seconds):
#: under load a batch then carries several tasks, and the thread takes the GIL less often.
FLUSH_DELAY = 0.005
#: Records kept unanswered at most (a controller gone for long); the oldest go first.
MAX_UNACKED = 100_000

Buffer = bytes | memoryview
#: Record keys whose values are stored as JSON text (sent encoded, as frames).
JSON_COLUMNS = frozenset({"header", "metadata", "content", "result_content", "result_metadata"})
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
#: Seconds an engine serves on without its controller before it exits.
DEFAULT_GRACE = 300.0
Done = Callable[[], None]


def watch_config_from_env() -> WatchConfig:
    """The watch settings; ``LOOM_CONTROLLER_GRACE`` (seconds) overrides the grace."""
    grace = os.environ.get("LOOM_CONTROLLER_GRACE", "")
    try:
        value = float(grace) if grace else DEFAULT_GRACE
    except ValueError:
        value = DEFAULT_GRACE
    return WatchConfig(grace=max(value, 0.5))


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
        self.on_give_up: Callable[[str], None] = lambda reason: None
        self._session = Session(controller.key, controller.signature_scheme)
        self._queue: collections.deque[tuple[JSONDict, Sequence[Buffer], Done | None]]
        self._queue = collections.deque()
        self._idle = False
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._closing = False
        #: Batches sent and not yet answered: msg_id -> their records.
        self._unacked: dict[str, list[tuple[JSONDict, Sequence[Buffer], Done | None]]] = {}
        self._thread = threading.Thread(target=self._run, name="loom-hub-link", daemon=True)

    @property
    def recording(self) -> bool:
        return self.durability != "off"

    def start(self) -> None:
        self._thread.start()

    def record(
        self,
        record: JSONDict,
        buffers: Sequence[Buffer],
        done: Done | None = None,
        *,
        wake: bool = True,
    ) -> None:
        """Queue one record for the hub (any thread); ``done`` is called (from this link's
        thread) once the hub committed it. ``wake=False``: no hurry, the record goes with
        the next batch or the next ping (within a second), so a running task is not
        disturbed by this thread waking (a task's start record)."""
        self._queue.append((record, buffers, done))
        if wake and self._idle:
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
                can_flush = not watch.silent and not watch.registering
                self._idle = True
                if self._queue and can_flush:
                    self._idle = False
                    timeout = 0.0
                events = dict(poller.poll(int(timeout * 1000) + (1 if timeout else 0)))
                if self._wake in events:
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(self._wake)
                while sock.poll(0):
                    self._received(sock, watch)
                if self._queue and can_flush:
                    # Let the task a record announced finish and join its batch (sync
                    # records are flushed at once).
                    sync = any(done for _, _, done in self._queue)
                    if not sync and sock.poll(int(FLUSH_DELAY * 1000)):
                        self._received(sock, watch)
                    self._flush(sock)
        except Exception:  # never take the engine down: it serves without records
            log.exception("the engine's hub link failed")
        finally:
            sock.close(linger=0)  # the eventfd stays: record() may still write to it

    def _act(self, action: Action, sock: zmq.Socket[bytes], watch: ControllerWatch) -> bool:
        url = self.controller.hub_url
        match action:
            case Action.PING:
                content = {"uuid": self.registration["uuid"], "id": self.engine_id}
                self._send(sock, "engine_ping_request", content)
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
        sock.send_multipart(self._session.serialize(message), copy=len(buffers) == 0)
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
                batch = self._unacked.pop(reply.parent_id or "", None)
                if batch is not None and content.get("status") == "ok":
                    for _, _, done in batch:
                        if done is not None:
                            done()

    def _flush(self, sock: zmq.Socket[bytes]) -> None:
        batch = []
        while self._queue:
            batch.append(self._queue.popleft())
        self._send_batch(sock, batch)

    def _send_batch(
        self, sock: zmq.Socket[bytes], batch: list[tuple[JSONDict, Sequence[Buffer], Done | None]]
    ) -> None:
        records: list[JSONDict] = []
        buffers: list[Buffer] = []
        for record, bufs, _ in batch:
            # The JSON columns travel encoded, as frames: the hub stores their text as is,
            # instead of decoding them with the batch and encoding each again for SQLite.
            small: JSONDict = {}
            names: list[str] = []
            for key, value in record.items():
                if key in JSON_COLUMNS:
                    names.append(key)
                    buffers.append(_encode(value).encode("utf-8"))
                else:
                    small[key] = value
            records.append({**small, "json": names, "nbuf": len(bufs)})
            buffers.extend(bufs)
        content = {"uuid": self.registration["uuid"], "id": self.engine_id, "records": records}
        msg_id = self._send(sock, "record_request", content, buffers)
        self._unacked[msg_id] = batch
        self._trim()

    def _resend(self, sock: zmq.Socket[bytes]) -> None:
        """After a re-registration: the hub may have lost what it did not answer."""
        batches, self._unacked = list(self._unacked.values()), {}
        for batch in batches:
            self._send_batch(sock, batch)

    def _trim(self) -> None:
        count = sum(len(batch) for batch in self._unacked.values())
        while count > MAX_UNACKED and self._unacked:
            oldest = next(iter(self._unacked))
            count -= len(self._unacked.pop(oldest))
            log.warning("engine %d: dropped unanswered records (limit %d)", self.engine_id, count)
