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
goes quiet for ``HEARTBEAT_GRACE`` seconds (``_liveness.Heartbeats``) or, for
an engine this controller launched, the moment its process exits.

Engines that come back (``parallel.controller._restarts``): when a launched engine's
process dies, :meth:`Hub.process_exited` loses it with the reason and, if its launcher
can replace engines and the ``RestartPolicy`` allows, asks the launcher for a new process
with the same uuid; the ``unregistration_notification`` says which (``restart``), and the
replacement's ``registration_notification`` carries ``restarted: {count, reason}``.

Setup replay: ``setup_request`` records code (or a pickled call, in buffers) in
:attr:`Hub.setup`, held here so it outlives the client that sent it. An engine that
registers while setup is recorded (a replacement, or one that joins late) is *joining*:
the hub runs every recorded item that applies to it, in order, on the engine's shell as a
client would (``execute_request`` / ``apply_request``), and only then announces it, with
``setup: {status, ...}``. A failing item stops the replay and the engine is announced
with the error (docs/parallel.md, "When things fail"); until then clients do not see it.

Clients talk to engines directly (each engine is a kernel with its own five ports): the
hub is not in the data path of a task. Bad messages are dropped with rate-limited logs
(``MessageSocket``); a request the hub does not know gets an error reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import zmq

from kernel.protocol import (
    JSONDict,
    MalformedMessage,
    Message,
    Received,
    ReplayedMessage,
    Reply,
    Session,
    SignatureError,
    error_content,
    reply_message,
)
from kernel.protocol._freshness import OUTLIVED_RESTART, address_to
from kernel.transport import MessageSocket, RateLimitedLog
from kernel.transport._curve import connect_curve
from parallel.scheduler import EngineLost, EngineRegistered, EngineRegistry, RegistrationReceived

from ..launchers import describe_death
from ..protocol._controller_info import ControllerInfo
from ..protocol._hub_messages import (
    EngineRecord,
    address_of,
    instance_of,
    max_message_size_of,
    ports_of,
    traits_of,
)
from ._db import SetupRow
from ._liveness import (
    LOCAL_HEARTBEAT_TIMEOUT,
    Heartbeats,
    heartbeat_timeout,
    watch_connection,
)
from ._records import COMMIT_WINDOW, Records
from ._restarts import GiveUp, RestartPolicy

__all__ = ["HEARTBEAT_GRACE", "Hub"]

log = logging.getLogger("loom.controller")

#: How often the heartbeat pings (``Heartbeats``' interval, seconds): an engine is
#: declared lost at most this long after its grace ran out, so the grace is the timeout
#: minus this (``_liveness.heartbeat_timeout``).
HEARTBEAT_INTERVAL = 0.5
#: The grace of an engine on this machine: lost within ``LOCAL_HEARTBEAT_TIMEOUT`` (3 s).
HEARTBEAT_GRACE = LOCAL_HEARTBEAT_TIMEOUT - HEARTBEAT_INTERVAL
#: How an engine that stopped of its own accord (a shutdown request) ended: not replaced.
CLEAN_EXIT = describe_death(0)
#: Seconds one recorded setup item may run on a joining engine before the engine is
#: announced with a timeout error instead (``--setup-timeout``; docs/parallel.md).
SETUP_TIMEOUT = 300.0


class HubRefusals(RateLimitedLog):
    """The hub socket's log of refused input, with a budget of its own for messages from
    peers that outlived a restore: engines' pings and task records queued while the
    controller was down, dated before this start and naming the previous instance
    (``OUTLIVED_RESTART``). After a ``--restore`` they come in a flood, which on one
    budget (5 lines per 10 s, then a count) could hide the line of a real replay or
    forgery refused at the same time; now each kind has its 5 lines, then its count."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger)
        self.outlived = RateLimitedLog(logger)

    def warning(self, fmt: str, *args: Any) -> None:
        if any(isinstance(arg, ReplayedMessage) and OUTLIVED_RESTART in str(arg) for arg in args):
            self.outlived.warning(fmt, *args)
        else:
            super().warning(fmt, *args)


@dataclass(frozen=True, slots=True)
class SetupItem:
    """One recorded piece of setup: a request replayed on joining engines."""

    #: ``execute_request`` (code) or ``apply_request`` (a pickled call in ``buffers``).
    msg_type: str
    content: JSONDict
    buffers: list[bytes]
    #: The engine ids it applies to; ``None``: every engine, including later ones.
    targets: list[int] | None
    #: What a client is shown: the code, or the callable's name.
    summary: str

    def applies_to(self, engine_id: int) -> bool:
        return self.targets is None or engine_id in self.targets

    def describe(self) -> JSONDict:
        return {"kind": self.msg_type, "summary": self.summary, "targets": self.targets}

    def row(self) -> SetupRow:
        """As the records database keeps it (so a restored controller replays it)."""
        return (self.msg_type, self.content, self.buffers, self.targets, self.summary)


class Hub:
    """Serves the hub socket and owns the engine table of one controller."""

    #: Seconds of heartbeat silence that lose an engine (``None``: 3 s on this machine,
    #: 10 s over a network; ``_liveness.heartbeat_timeout``). Set by the controller.
    heartbeat_timeout: float | None = None

    #: The task records (``_records``; issue 13): set by the controller.
    records: Records | None = None
    #: Called with (uuid, id, pid) after each registration (the engines file).
    on_register: Callable[[str, int, int], None] | None = None
    #: Seconds a setup item may run on a joining engine (``SETUP_TIMEOUT``).
    setup_timeout: float = SETUP_TIMEOUT

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
        hub.rejected = HubRefusals(log)  # stale peers after a restore: a budget of their own
        #: Set whenever an engine registers (``wait_for_engines`` in the controller).
        self.changed = asyncio.Event()
        #: Restarts: the policy (``None``: engines are not replaced) and the launcher's
        #: ``replace`` (set by the controller when its launcher ``can_replace``).
        self.restart_policy: RestartPolicy | None = RestartPolicy()
        self.replace: Callable[[str], None] | None = None
        #: Why dead engines are not replaced when they are not (said in the loss notice).
        self.no_restart = "restarts are off"
        #: Whether a pid is an engine process the launcher watches (it reports the exit).
        self.launched: Callable[[int], bool] = lambda pid: False
        #: Set once the controller stops: deaths from then on are not replaced.
        self.stopping = False
        #: uuid -> ``{"count", "reason"}`` of engines restarted at least once.
        self._restarted: dict[str, JSONDict] = {}
        #: uuids the hub asked to stop: their exit is not a death.
        self._stop_asked: set[str] = set()
        #: Recorded setup, in order (``setup_request``).
        self.setup: list[SetupItem] = []
        #: uuid -> the pid it last registered with (the same pid again: not a new process).
        self._pids: dict[str, int] = {}
        #: Engines registered but not announced yet: their setup runs.
        self._joining: dict[int, asyncio.Task[None]] = {}
        #: Every engine's heartbeat, and the task that beats (started with the first).
        self._beats = Heartbeats(HEARTBEAT_INTERVAL)
        self._beating: asyncio.Task[None] | None = None
        #: The pending commit of record batches (``_records.COMMIT_WINDOW``).
        self._flush: asyncio.TimerHandle | None = None

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
                engines = [
                    self._announced(record)
                    for engine_id, record in self.engines.items()
                    if engine_id not in self._joining
                ]
                setup = [item.describe() for item in self.setup]
                # Registered, not announced yet: their setup replay runs (loom cluster list).
                joining = [{"id": i, "pid": self.engines[i].pid} for i in self._joining]
                return Reply(
                    {"status": "ok", "engines": engines, "setup": setup, "joining": joining}
                )
            case "shutdown_request":
                return self._shutdown(request)
            case "engine_ping_request":
                return self._ping(request)
            case (
                "record_request"
                | "result_request"
                | "db_request"
                | "resubmitted_request"
                | "purge_request"
                | "history_request"
                | "queue_request"
            ):
                if self.records is None:
                    raise MalformedMessage("this controller keeps no records")
                if request.msg_type == "record_request" and not self.info.authenticates_peers:
                    self._check_batch(request)
                reply = self.records.answer(request)
                if self.records.unflushed and self._flush is None:
                    loop = asyncio.get_running_loop()
                    self._flush = loop.call_later(COMMIT_WINDOW, self._flush_records)
                return reply
            case "setup_request":
                return self._record_setup(request)
        self._rejected.warning("unknown hub request %r", request.msg_type)
        if request.msg_type.endswith("_request"):
            return Reply(error_content(ValueError(f"unknown request {request.msg_type}")))
        return None

    def _check_batch(self, request: Message) -> None:
        """A record batch's one buffer (its rows' frames) against the digest its signed
        content carries: on a transport that does not authenticate peers (tcp without
        Curve) the message signature does not cover buffers, and a batch altered on the
        way would be stored as what the engine ran."""
        try:
            self.session.signer.verify_buffers(request.buffers, request.content.get("hmac"))
        except SignatureError as exc:
            raise MalformedMessage(f"a record batch refused: {exc}") from None

    def _flush_records(self) -> None:
        """Commit the record batches of the last ``COMMIT_WINDOW`` together."""
        self._flush = None
        if self.records is not None:
            self.records.flush()

    def _ping(self, request: Message) -> Reply:
        """An engine checks that its controller is there and knows it; one it does not
        know (this hub was restarted, or declared it lost in a partition) is told to
        register again (``registered: false``), which gives it its id back."""
        uuid = request.content.get("uuid")
        engine_id = self.registry.id_of(uuid) if isinstance(uuid, str) else None
        record = self.engines.get(engine_id) if engine_id is not None else None
        registered = record is not None and record.uuid == uuid
        content: JSONDict = {"status": "ok", "registered": registered}
        if self.records is not None and isinstance(uuid, str):  # the batches it committed
            content["records"] = self.records.committed(uuid, request.content.get("link"))
        return Reply(content)

    # -- engines --------------------------------------------------------------------

    def _register(self, request: Message) -> Reply:
        uuid, pid = request.content.get("uuid"), request.content.get("pid", 0)
        if not isinstance(uuid, str) or not uuid or not isinstance(pid, int):
            raise MalformedMessage("registration needs a uuid string and a pid number")
        ports = ports_of(request.content.get("ports"))
        address = address_of(request.content)
        limit = max_message_size_of(request.content)
        labels, resources = traits_of(request.content)  # load-balanced tasks may ask for them
        instance = instance_of(request.content)  # what requests to the engine name (replays)
        events = self.registry.handle(RegistrationReceived(uuid=uuid, stimulus_id=request.msg_id))
        # A live engine registering again (its hub link after a partition or a restored
        # controller sends its id) keeps its namespace: only a new process replays setup.
        reattached = isinstance(request.content.get("id"), int) or self._pids.get(uuid) == pid
        self._pids[uuid] = pid
        engine_id = -1
        for event in events:
            match event:
                case EngineLost(engine=lost):
                    self._forget(lost, "it registered again (restarted)")
                case EngineRegistered(engine=engine_id):
                    record = EngineRecord(
                        engine_id, uuid, pid, address, ports, limit, labels, resources, instance
                    )
                    self.engines[engine_id] = record
                    self._watch(record)
                    if not reattached and any(i.applies_to(engine_id) for i in self.setup):
                        self._join(record)
                    else:
                        self._publish("registration_notification", self._announced(record))
        log.info("engine %d registered (pid %d)", engine_id, pid)
        self.changed.set()
        if self.on_register is not None:
            self.on_register(uuid, engine_id, pid)
        durability = self.records.durability if self.records is not None else "off"
        return Reply({"status": "ok", "id": engine_id, "durability": durability})

    def lose(self, engine_id: int, reason: str, restart: JSONDict | None = None) -> None:
        """The engine is gone (heartbeat silent, process exited): forget it, tell clients
        (``restart``: what happens next, in the notification)."""
        lost = EngineLost(engine=engine_id, reason=reason, stimulus_id=f"lost-{engine_id}")
        for event in self.registry.handle(lost):
            self._forget(event.engine, reason, restart)

    def _forget(self, engine_id: int, reason: str, restart: JSONDict | None = None) -> None:
        record = self.engines.pop(engine_id, None)
        task = self._heartbeats.pop(engine_id, None)
        if task is not None:
            task.cancel()
            self._beats.unwatch(engine_id)
        joining = self._joining.pop(engine_id, None)
        if joining is not None:
            joining.cancel()
        if record is not None:
            log.warning("engine %d lost: %s", engine_id, reason)
            if self.records is not None:  # its running tasks are failed, with the reason
                self.records.engine_lost(record.uuid, f"engine {engine_id} {reason}")
            content: JSONDict = {"id": engine_id, "uuid": record.uuid, "reason": reason}
            if restart is not None:
                content["restart"] = restart
            self._publish("unregistration_notification", content)

    # -- engines that come back -------------------------------------------------------

    def process_exited(self, pid: int, how: str, engine_uuid: str | None, output: str) -> None:
        """A process the launcher started ended (``how``: ``describe_death``): lose its
        engine and replace it if the policy allows. ``engine_uuid`` (from the launcher)
        counts a replacement that died before it registered."""
        # By pid, and by uuid where the launcher knows it: pids of other hosts may repeat.
        record = next(
            (r for r in self.engines.values() if r.pid == pid and engine_uuid in (None, r.uuid)),
            None,
        )
        if record is not None:
            engine_uuid = record.uuid
        if engine_uuid is None:
            return
        engine_id = self.registry.id_of(engine_uuid)
        restart = self._decide(engine_uuid, engine_id, how, output)
        reason = f"died: {how}"
        if record is not None:
            self.lose(record.id, reason, restart)
        elif engine_id is not None and restart is not None and restart["state"] == "given up":
            # Never announced again since its last death: clients learn it will not return.
            content: JSONDict = {"id": engine_id, "uuid": engine_uuid, "reason": reason}
            self._publish("unregistration_notification", {**content, "restart": restart})

    def _decide(
        self, engine_uuid: str, engine_id: int | None, how: str, output: str
    ) -> JSONDict | None:
        """Replace engine ``engine_uuid`` or give up; the notification's ``restart``."""
        if self.stopping or how == CLEAN_EXIT or engine_uuid in self._stop_asked:
            return None
        if self.replace is None or self.restart_policy is None:
            return {"state": "off", "reason": self.no_restart}
        decision = self.restart_policy.died(engine_uuid, time.monotonic(), how)
        name = f"engine {engine_id}" if engine_id is not None else f"engine {engine_uuid[:8]}"
        if isinstance(decision, GiveUp):
            log.warning("%s %s; its last output:\n%s", name, decision.describe(), output)
            return {
                "state": "given up",
                "deaths": decision.deaths,
                "window": decision.window,
                "reason": how,
                "output": output[-2000:],
                "message": decision.describe(),
            }
        else:
            try:
                self.replace(engine_uuid)
            except Exception as exc:  # a launcher that cannot: said, not raised
                log.warning("%s cannot be restarted: %s", name, exc)
                return {"state": "failed", "reason": str(exc)}
            log.warning("%s %s: restarting it (restart %d)", name, how, decision.count)
            self._restarted[engine_uuid] = {"count": decision.count, "reason": how}
            return {"state": "restarting", "count": decision.count}

    def _announced(self, record: EngineRecord) -> JSONDict:
        """An engine record as clients get it: with ``restarted`` once it was."""
        content = record.to_content()
        restarted = self._restarted.get(record.uuid)
        if restarted is not None:
            content["restarted"] = dict(restarted)
        return content

    # -- setup replay ---------------------------------------------------------------

    def _record_setup(self, request: Message) -> Reply:
        content = request.content
        if content.get("clear") is True:  # Client.clear_setup: replay nothing from now on
            self.setup.clear()
            self._save_setup()
            return Reply({"status": "ok", "index": -1, "engines": []})
        targets = content.get("targets")
        if targets is not None and not (
            isinstance(targets, list) and all(isinstance(i, int) for i in targets)
        ):
            raise MalformedMessage("setup targets must be null or a list of engine ids")
        code = content.get("code")
        if isinstance(code, str):
            execute: JSONDict = {"code": code, "silent": False, "store_history": False}
            item = SetupItem("execute_request", execute, [], targets, code)
        elif request.buffers:
            name = str(content.get("name", "a function"))
            buffers = [bytes(buffer) for buffer in request.buffers]
            item = SetupItem("apply_request", {}, buffers, targets, name)
        else:
            raise MalformedMessage("setup needs code (a string) or a pickled call (buffers)")
        self.setup.append(item)
        self._save_setup()
        announced = [i for i in self.engines if i not in self._joining and item.applies_to(i)]
        return Reply({"status": "ok", "index": len(self.setup) - 1, "engines": announced})

    def _save_setup(self) -> None:
        """Keep the recorded setup with the records (a restored controller has it)."""
        if self.records is not None:
            self.records.db.save_setup([item.row() for item in self.setup])

    def load_setup(self) -> None:
        """Take the recorded setup from the records (``--restore``)."""
        if self.records is not None:
            self.setup = [SetupItem(*row) for row in self.records.db.load_setup()]

    def _join(self, record: EngineRecord) -> None:
        name = f"loom-setup-engine-{record.id}"
        self._joining[record.id] = self._tg.create_task(self._replay(record), name=name)

    async def _replay(self, record: EngineRecord) -> None:
        """Run the recorded setup on a joining engine, then announce it (with any error)."""
        info = self.info.engine_connection(record.address, record.ports)
        session = Session(self.info.key, self.info.signature_scheme)
        shell = MessageSocket.connect(
            zmq.DEALER, info.url("shell"), session, "shell", curve=info.curve
        )
        outcome: JSONDict = {"status": "ok"}
        ran = 0
        try:
            index = 0
            while index < len(self.setup):  # items recorded meanwhile are run too
                item, index = self.setup[index], index + 1
                if not item.applies_to(record.id):
                    continue
                metadata: JSONDict = {}
                if item.buffers and not self.info.authenticates_peers:
                    metadata["buffers_hmac"] = session.signer.sign_buffers(item.buffers)
                message = session.message(
                    item.msg_type, item.content, metadata=metadata, buffers=item.buffers
                )
                address_to(message.header, record.instance)  # for this engine only
                await shell.send(message)
                try:
                    async with asyncio.timeout(self.setup_timeout):
                        reply = await _reply_to(shell, message.msg_id)
                except TimeoutError:  # announced anyway: a stuck engine is one to repair
                    outcome = _setup_timed_out(index - 1, item.summary, self.setup_timeout)
                    log.warning("engine %d: %s", record.id, outcome["evalue"])
                    break
                ran += 1
                if reply.content.get("status") != "ok":
                    outcome = {
                        "status": "error",
                        "index": index - 1,
                        "summary": item.summary,
                        "ename": str(reply.content.get("ename", "Error")),
                        "evalue": str(reply.content.get("evalue", "")),
                    }
                    log.warning(
                        "engine %d: setup %r failed: %s: %s",
                        record.id,
                        item.summary,
                        outcome["ename"],
                        outcome["evalue"],
                    )
                    break
        finally:
            shell.close()
        outcome["count"] = ran
        self._joining.pop(record.id, None)
        self._publish("registration_notification", {**self._announced(record), "setup": outcome})
        self.changed.set()

    def _watch(self, record: EngineRecord) -> None:
        url = self.info.engine_connection(record.address, record.ports).url("hb")
        timeout = heartbeat_timeout(self.info.transport, record.address, self.heartbeat_timeout)

        def silent() -> None:
            if self.engines.get(record.id) is record:  # not a replacement under its id
                self.lose(record.id, f"heartbeat silent for {timeout:g} s")

        # Every engine's heartbeat from one task (``_liveness.Heartbeats``).
        grace = timeout - HEARTBEAT_INTERVAL
        self._beats.watch(record.id, url, grace, silent, curve=self.info.curve)
        if self._beating is None:
            self._beating = self._tg.create_task(self._beats.run(), name="loom-heartbeats")
        name = f"loom-heartbeat-engine-{record.id}"
        self._heartbeats[record.id] = self._tg.create_task(self._liveness(record, url), name=name)

    async def _liveness(self, record: EngineRecord, url: str) -> None:
        """Watch one engine's connection (``_liveness``: a process that exits is lost at
        once; a hang is lost by its heartbeat, after the timeout)."""

        def gone() -> None:
            if self.launched(record.pid):  # its launcher reports the exit, and how (pidfd)
                return
            if self.engines.get(record.id) is record:  # not a replacement under its id
                self.lose(record.id, "its connection closed: the process exited")

        # Under CurveZMQ the watcher completes its handshake with the cluster's keys.
        curve = self.info.curve
        configure = None if curve is None else partial(connect_curve, keys=curve)
        await watch_connection(url, gone, configure=configure)

    # -- clients --------------------------------------------------------------------

    def _shutdown(self, request: Message) -> Reply:
        targets = request.content.get("targets")
        ids = list(self.engines) if targets is None else targets
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise MalformedMessage("targets must be null or a list of engine ids")
        for engine_id in ids:
            record = self.engines.get(engine_id)
            if record is not None:
                self._stop_asked.add(record.uuid)
                self._tg.create_task(self._stop_engine(record), name=f"loom-stop-{engine_id}")
        if request.content.get("hub", False):
            self._on_shutdown()
        return Reply({"status": "ok"})

    async def _stop_engine(self, record: EngineRecord) -> None:
        """Ask an engine to shut down on its control channel (messaging spec, shutdown)."""
        info = self.info.engine_connection(record.address, record.ports)
        session = Session(self.info.key, self.info.signature_scheme)
        control = MessageSocket.connect(
            zmq.DEALER, info.url("control"), session, "control", curve=info.curve
        )
        try:
            request = session.message("shutdown_request", {"restart": False})
            address_to(request.header, record.instance)  # a replay stops no other engine
            await control.send(request)
            async with asyncio.timeout(2.0):
                await control.recv()
        except TimeoutError:
            log.warning("engine %d did not answer its shutdown request", record.id)
        finally:
            control.close()

    def close(self) -> None:
        """Stop every heartbeat monitor (the controller is stopping)."""
        self.stopping = True
        if self._flush is not None:  # committed now (TaskDB.close would too)
            self._flush.cancel()
            self._flush_records()
        for task in [*self._heartbeats.values(), *self._joining.values()]:
            task.cancel()
        if self._beating is not None:
            self._beating.cancel()
        self._beats.close()
        self._heartbeats.clear()
        self._joining.clear()

    def _publish(self, msg_type: str, content: JSONDict) -> None:
        message = self.session.message(msg_type, content)
        self._notify.send_multipart(self.session.serialize(message))


def _setup_timed_out(index: int, summary: str, timeout: float) -> JSONDict:
    """The ``setup`` outcome of an item that did not answer within ``timeout``."""
    return {
        "status": "error",
        "index": index,
        "summary": summary,
        "ename": "SetupTimeout",
        "evalue": f"no reply after {timeout:g} s (--setup-timeout); it may still be running:"
        " interrupt the engine or kill it to restart it",
    }


async def _reply_to(shell: MessageSocket, msg_id: str) -> Message:
    """The next message on ``shell`` whose parent is ``msg_id`` (others are dropped)."""
    while True:
        received = await shell.recv()
        if received.message.parent_id == msg_id:
            return received.message
