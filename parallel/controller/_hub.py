"""The controller's hub: engines register, clients ask for engines, heartbeats watch them.

Theory of operation
-------------------
One asyncio loop, no threads. The hub ROUTER takes ``registration_request`` from engines
and ``connection_request`` / ``shutdown_request`` from clients (``parallel.protocol._hub``
lists the contents); the notification PUB announces every engine that joins or is lost,
so clients learn of both without asking.

Which engines exist is decided by the pure ``EngineRegistry`` (ids 0, 1, 2... in
registration order; a uuid that registers again gets its id back, and a restart of a
live engine is a loss then a registration). The hub only carries out what it says:
reply, publish, start or stop a heartbeat monitor. An engine is lost when its heartbeat
goes quiet for ``HEARTBEAT_GRACE`` seconds (``kernel.client.HeartbeatMonitor``) or, for
an engine this controller launched, the moment its process exits.

Clients talk to engines directly (each engine is a kernel with its own five ports): the
hub is not in the data path of a task. Bad messages are dropped with rate-limited logs
(``MessageSocket``); a request the hub does not know gets an error reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import zmq

from kernel.client import HeartbeatMonitor
from kernel.protocol import (
    JSONDict,
    MalformedMessage,
    Message,
    Received,
    Reply,
    Session,
    error_content,
    reply_message,
)
from kernel.transport import MessageSocket, RateLimitedLog
from parallel.scheduler import EngineLost, EngineRegistered, EngineRegistry, RegistrationReceived

from ..protocol._controller_info import ControllerInfo
from ..protocol._hub_messages import EngineRecord, address_of, max_message_size_of, ports_of
from ._records import Records

__all__ = ["HEARTBEAT_GRACE", "Hub"]

log = logging.getLogger("loom.controller")

#: An engine whose heartbeat stays silent this long is lost (seconds).
HEARTBEAT_GRACE = 2.5


class Hub:
    """Serves the hub socket and owns the engine table of one controller."""

    #: The task records (``_records``; issue 13): set by the controller.
    records: Records | None = None
    #: Called with (uuid, id, pid) after each registration (the engines file).
    on_register: Callable[[str, int, int], None] | None = None

    def __init__(
        self,
        info: ControllerInfo,
        hub: MessageSocket,
        notify: zmq.Socket[bytes],
        tg: asyncio.TaskGroup,
        *,
        on_shutdown: Callable[[], None],
    ) -> None:
        self.info = info
        self.session = hub.session
        self._hub = hub
        self._notify = notify
        self._tg = tg
        self._on_shutdown = on_shutdown
        self.registry = EngineRegistry()
        #: The live engines' records, by id.
        self.engines: dict[int, EngineRecord] = {}
        self._heartbeats: dict[int, asyncio.Task[None]] = {}
        self._rejected = RateLimitedLog(log)
        #: Set whenever an engine registers (``wait_for_engines`` in the controller).
        self.changed = asyncio.Event()

    async def serve(self) -> None:
        """Answer hub requests until cancelled."""
        while True:
            received = await self._hub.recv()
            try:
                reply = self._answer(received)
            except MalformedMessage as exc:
                self._rejected.warning("bad %s: %s", received.message.msg_type, exc)
                reply = Reply(error_content(exc))
            if reply is not None:
                message = reply_message(self.session, received.message, reply)
                await self._hub.send(message, received.identities)

    def _answer(self, received: Received) -> Reply | None:
        request = received.message
        match request.msg_type:
            case "registration_request":
                return self._register(request)
            case "connection_request":
                engines = [record.to_content() for record in self.engines.values()]
                return Reply({"status": "ok", "engines": engines})
            case "shutdown_request":
                return self._shutdown(request)
            case "engine_ping_request":
                return self._ping(request)
            case "record_request" | "result_request" | "db_request" | "resubmitted_request":
                if self.records is None:
                    raise MalformedMessage("this controller keeps no records")
                return self.records.answer(request)
        self._rejected.warning("unknown hub request %r", request.msg_type)
        if request.msg_type.endswith("_request"):
            return Reply(error_content(ValueError(f"unknown request {request.msg_type}")))
        return None

    def _ping(self, request: Message) -> Reply:
        """An engine checks that its controller is there and knows it; one it does not
        know (this hub was restarted, or declared it lost in a partition) is told to
        register again (``registered: false``), which gives it its id back."""
        uuid = request.content.get("uuid")
        engine_id = self.registry.id_of(uuid) if isinstance(uuid, str) else None
        record = self.engines.get(engine_id) if engine_id is not None else None
        registered = record is not None and record.uuid == uuid
        return Reply({"status": "ok", "registered": registered})

    # -- engines --------------------------------------------------------------------

    def _register(self, request: Message) -> Reply:
        uuid, pid = request.content.get("uuid"), request.content.get("pid", 0)
        if not isinstance(uuid, str) or not uuid or not isinstance(pid, int):
            raise MalformedMessage("registration needs a uuid string and a pid number")
        ports = ports_of(request.content.get("ports"))
        address = address_of(request.content)
        limit = max_message_size_of(request.content)
        events = self.registry.handle(RegistrationReceived(uuid=uuid, stimulus_id=request.msg_id))
        engine_id = -1
        for event in events:
            match event:
                case EngineLost(engine=lost):
                    self._forget(lost, "it registered again (restarted)")
                case EngineRegistered(engine=engine_id):
                    record = EngineRecord(engine_id, uuid, pid, address, ports, limit)
                    self.engines[engine_id] = record
                    self._watch(record)
                    self._publish("registration_notification", record.to_content())
        log.info("engine %d registered (pid %d)", engine_id, pid)
        self.changed.set()
        if self.on_register is not None:
            self.on_register(uuid, engine_id, pid)
        durability = self.records.durability if self.records is not None else "off"
        return Reply({"status": "ok", "id": engine_id, "durability": durability})

    def lose(self, engine_id: int, reason: str) -> None:
        """The engine is gone (heartbeat silent, process exited): forget it, tell clients."""
        lost = EngineLost(engine=engine_id, reason=reason, stimulus_id=f"lost-{engine_id}")
        for event in self.registry.handle(lost):
            self._forget(event.engine, reason)

    def _forget(self, engine_id: int, reason: str) -> None:
        record = self.engines.pop(engine_id, None)
        task = self._heartbeats.pop(engine_id, None)
        if task is not None:
            task.cancel()
        if record is not None:
            log.warning("engine %d lost: %s", engine_id, reason)
            content = {"id": engine_id, "uuid": record.uuid, "reason": reason}
            self._publish("unregistration_notification", content)

    def _watch(self, record: EngineRecord) -> None:
        url = self.info.engine_connection(record.address, record.ports).url("hb")

        def changed(responsive: bool) -> None:
            if not responsive:
                self.lose(record.id, f"its heartbeat was silent for {HEARTBEAT_GRACE:g} s")

        monitor = HeartbeatMonitor(url, changed, grace=HEARTBEAT_GRACE)
        name = f"loom-heartbeat-engine-{record.id}"
        self._heartbeats[record.id] = self._tg.create_task(monitor.run(), name=name)

    # -- clients --------------------------------------------------------------------

    def _shutdown(self, request: Message) -> Reply:
        targets = request.content.get("targets")
        ids = list(self.engines) if targets is None else targets
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise MalformedMessage("targets must be null or a list of engine ids")
        for engine_id in ids:
            record = self.engines.get(engine_id)
            if record is not None:
                self._tg.create_task(self._stop_engine(record), name=f"loom-stop-{engine_id}")
        if request.content.get("hub", False):
            self._on_shutdown()
        return Reply({"status": "ok"})

    async def _stop_engine(self, record: EngineRecord) -> None:
        """Ask an engine to shut down on its control channel (messaging spec, shutdown)."""
        info = self.info.engine_connection(record.address, record.ports)
        session = Session(self.info.key, self.info.signature_scheme)
        control = MessageSocket.connect(zmq.DEALER, info.url("control"), session, "control")
        try:
            await control.send(session.message("shutdown_request", {"restart": False}))
            async with asyncio.timeout(2.0):
                await control.recv()
        except TimeoutError:
            log.warning("engine %d did not answer its shutdown request", record.id)
        finally:
            control.close()

    def close(self) -> None:
        """Stop every heartbeat monitor (the controller is stopping)."""
        for task in self._heartbeats.values():
            task.cancel()
        self._heartbeats.clear()

    def _publish(self, msg_type: str, content: JSONDict) -> None:
        message = self.session.message(msg_type, content)
        self._notify.send_multipart(self.session.serialize(message))
