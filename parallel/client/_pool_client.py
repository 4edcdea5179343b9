"""``Client``: a connection to a cluster, its engines, and the results of their work.

Theory of operation
-------------------
The client reads the cluster file, asks the controller's hub for the engines
(``connection_request``) and subscribes to its notifications, then talks to every
engine *directly*: an engine is a kernel, and its shell, iopub and control sockets are
one :class:`~._engine_link.EngineLink` each. The controller is not in the data path of
a task. Every request is tracked per engine by the pure ``RequestTracker``; the client
routes what the tracker reports to the :class:`~._asyncresult.AsyncResult` the request
belongs to (held weakly: a result nobody holds is not kept alive by its replies).

There is no thread and no loop of the client's own: blocking calls pump the sockets
(``Pump.pump``), ``await`` waits on the caller's loop (``Pump.wait_until``). So the same
client works in a script, inside a running kernel's cell, and in async code.

Engines that die are reported by the hub (``unregistration_notification``, within its
heartbeat grace; at once for a local engine, by pidfd): their pending tasks fail with
:class:`EngineError` saying how the engine died; load-balanced tasks with retries left
run again elsewhere (``_balancer``). A replacement (same id, a new process) arrives as a
``registration_notification`` with ``restarted``: the client links to its new ports and
says so once on stderr (``engine 2 restarted (killed by signal 9 (SIGKILL))``): in a
kernel that line lands in the output of the cell that is waiting, ``%px`` included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import InvalidStateError
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from kernel.protocol import (
    ConnectionFileError,
    JSONDict,
    Message,
    OutputReceived,
    ProtocolError,
    RequestFinished,
    Session,
    TrackerEvent,
)
from kernel.protocol._freshness import address_to
from kernel.protocol._message import UNANNOUNCED, made_here, utc_now_iso
from kernel.transport import shared_context
from kernel.transport._curve import HandshakeWatch
from kernel.transport._frames import has_large_buffer

from .._errors import (
    ClientClosed,
    ClusterUnavailable,
    EngineError,
    NoEnginesRegistered,
    RemoteError,
    SerializationError,
)
from .._errors import TimeoutError as ParallelTimeout
from ..protocol._controller_info import ControllerInfo, newest_cluster_file
from ..protocol._hub_messages import EngineRecord
from ..protocol._shm import METADATA_KEY, SharedMemoryError
from ._asyncresult import AsyncResult, ExecuteReply
from ._controller_link import ControllerLink
from ._engine_link import EngineLink, _socket
from ._pump import Pump
from ._purge_client import hub_history, msg_ids_of, purge_hub, purge_local
from ._result_index import ResultIndex
from ._send import Unreachable, send_or_fail
from ._shm_client import ClientShm, open_client_shm

if TYPE_CHECKING:
    from ._balancer import Balancer
    from ._executor import ViewExecutor
    from ._views import DirectView, LoadBalancedView

__all__ = ["Client", "EngineRestart"]


class EngineRestart:
    """How often an engine was replaced, and why the last time (``Client.restarts``)."""

    __slots__ = ("count", "reason")

    def __init__(self, count: int, reason: str) -> None:
        self.count = count
        self.reason = reason

    def __repr__(self) -> str:
        return f"EngineRestart(count={self.count}, reason={self.reason!r})"


#: While waiting for engines, ask the hub again this often (seconds).
REQUERY = 1.0

Targets = int | slice | Sequence[int] | str | None
#: What a purge names (``purge_hub_results``): ``"all"``, msg_ids, ``AsyncResult`` objects.
Jobs = str | AsyncResult | Iterable[str | AsyncResult] | None


class Client:
    """A connection to a Loom cluster; see the module docstring.

    ``Client()`` connects to the cluster started last (``loom cluster start``);
    ``Client(path)`` to the cluster file at ``path``. Raises :class:`ClusterUnavailable`
    when there is no cluster file or its controller does not answer within ``timeout``.
    """

    def __init__(self, url_file: str | os.PathLike[str] | None = None, *, timeout: float = 10.0):
        try:
            self.cluster_file = Path(url_file) if url_file else newest_cluster_file()
            self._info = ControllerInfo.read(self.cluster_file)
        except ConnectionFileError as exc:
            raise ClusterUnavailable(str(exc)) from exc
        self.session = Session(self._info.key, self._info.signature_scheme)
        #: What the engine links read with: where the transport authenticates every peer
        #: (``authenticates_peers``) an engine's replies are not checked against their
        #: signature again, about a fifth of reading one (docs/architecture.md, "Security of
        #: the buffers"); a repeated reply is still dropped (``_sequence``, the tracker).
        self._link_session = self.session.fork()
        #: ``ControllerInfo.authenticates_peers`` (a property), asked at every request
        #: with buffers and every reply: the cluster file does not change under a client.
        self._authenticated = self._info.authenticates_peers
        self._link_session.check_signatures = not self._authenticated
        self._ctx: zmq.Context[zmq.Socket[bytes]] = shared_context()  # type: ignore[assignment]
        #: The default of ``block`` where a client call takes one (``get_result``,
        #: ``resubmit``), as ipyparallel's ``Client.block``; views have their own.
        self.block = False
        self._pump = Pump()
        self._links: dict[int, EngineLink] = {}
        #: What the hub said of each live engine (its pid, ports).
        self._records: dict[int, EngineRecord] = {}
        self._lost: dict[int, str] = {}
        #: Engines replaced after dying: id -> how often and why (``loom cluster list``).
        self.restarts: dict[int, EngineRestart] = {}
        #: What the hub replied to requests someone waits for (``setup_request``).
        self._hub_replies: dict[str, JSONDict] = {}
        #: The setup the controller holds (``setup``), as of the last engine list:
        #: ``{"kind", "summary", "targets"}`` each, in order.
        self.recorded_setup: list[JSONDict] = []
        #: Engines registered but not announced yet, as of the last engine list: the
        #: controller is replaying setup on them (``{"id", "pid"}`` each).
        self.joining: list[JSONDict] = []
        self._results = ResultIndex()
        self._kinds: dict[str, str] = {}
        #: Hub requests someone waits for -> whether their reply arrived (engine lists are
        #: applied as replies arrive, waited for or not).
        self._answered: dict[str, bool] = {}
        self._balancer: Balancer | None = None
        # The hub's handshake is watched: a refused key is told at once, not as a timeout.
        self._hub = _socket(self._ctx, zmq.DEALER, None, self._info.curve)
        self._handshake: HandshakeWatch | None = HandshakeWatch(self._hub)
        self._hub.connect(self._info.hub_url)
        self._notify = _socket(self._ctx, zmq.SUB, self._info.notify_url, self._info.curve)
        self._pump.add(self._handshake.socket, self._handshake.feed)
        self._pump.add(self._hub, self._on_hub)
        self._pump.add(self._notify, self._on_notify)
        self._pump.on_tick = self._check_engines
        #: Liveness of the controller and its task records (``_controller_link``).
        self._controller = ControllerLink(self)
        self._closed = False
        #: Large buffers to and from engines on this host (``_shm_client``); None: wire.
        self._shm: ClientShm | None = None
        try:
            self._shm = open_client_shm(
                self._info.cluster_id,
                self._info.authenticates_peers,
                self.session.session_id,
                os.environ,
            )
            self._refresh(timeout)
        except BaseException:
            self.close()
            raise

    # -- engines ------------------------------------------------------------------------

    @property
    def ids(self) -> list[int]:
        """The ids of the registered engines, in order."""
        # Only the hub and its notifications change the list: reading every engine's
        # sockets here cost two system calls each, at every call of every view; and the
        # hub's are read only if their descriptors fired (Pump.read_ready).
        self._pump.read_ready(self._hub, self._notify)
        return sorted(self._links)

    def wait_for_engines(
        self,
        n: int | None = None,
        *,
        timeout: float = -1,
        block: bool = True,
        interactive: bool | None = None,
        widget: bool | None = None,
    ) -> None:
        """Block until ``n`` engines are registered (``None``: the ones known now).

        Raises :class:`TimeoutError` after ``timeout`` seconds (negative: no limit).
        ``interactive`` and ``widget`` (ipyparallel's progress display) are accepted and
        show nothing; ``block=False`` is refused: without a thread nothing would wait.
        """
        if not block:
            raise NotImplementedError(
                "wait_for_engines(block=False) is not supported: the client has no thread"
                " to wait with; call it when you need the engines, or await"
                " Cluster.start_and_connect()"
            )
        target = len(self._links) if n is None else n
        if not self.pump_until_engines(target, None if timeout < 0 else timeout):
            raise ParallelTimeout(
                f"{len(self._links)} of {target} engines registered after {timeout:g} s"
            )

    def pump_until_engines(
        self, count: int, timeout: float | None, *, alive: Callable[[], bool] = lambda: True
    ) -> bool:
        """Pump until ``count`` engines are known, ``timeout`` passes or ``alive()`` is
        False; whether enough are known. Notifications are the fast path; the hub is asked
        again every :data:`REQUERY` seconds, since a PUB drops what it sends before a new
        subscription reaches it."""
        self._pump.check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._links) < count and alive():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self._request_engines()
            slice_ = REQUERY if remaining is None else min(REQUERY, remaining)
            self._pump.pump_until(lambda: len(self._links) >= count or not alive(), slice_)
        return len(self._links) >= count

    def _refresh(self, timeout: float) -> None:
        self._await_hub(self._request_engines(), timeout)
        self._end_handshake_watch()

    def _end_handshake_watch(self) -> None:
        if self._handshake is not None:
            self._pump.remove(self._handshake.socket)
            self._handshake.close()
            self._handshake = None

    def _request_engines(self) -> Message:
        return self._send_hub("connection_request", {})

    def _send_hub(self, msg_type: str, content: JSONDict) -> Message:
        message = self.session.message(msg_type, content)
        address_to(message.header, self._info.instance)  # the hub's start (replays)
        self._to_hub(self._hub, self.session.serialize(message))
        return message

    def _to_hub(self, sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
        """Send on a socket to the hub (``sock``); :class:`ClusterUnavailable` if no
        connection takes it within seconds: a refused handshake (``_send``).
        :class:`ValueError` for a frame over the hub's limit, which libzmq would drop
        with the connection, unanswered (issue 12; ``parallel.protocol._hub_limits``)."""
        limit = self._info.max_message_size
        if limit and (largest := max(memoryview(f).nbytes for f in frames)) > limit:
            raise ValueError(
                f"this request to the controller has a part of {largest:,} bytes, more than"
                f" it accepts ({limit:,}): start the cluster with a larger"
                " LOOM_HUB_MAX_MESSAGE_SIZE, or send less (setup: load data in the function)"
            )
        try:
            send_or_fail(sock, frames, refused=self._refused)
        except Unreachable as exc:
            raise ClusterUnavailable(self._unreachable(exc.reason)) from None
        finally:
            self._pump.sent_on(sock)  # a send (or the wait's poll) may take an edge

    def _refused(self) -> str | None:
        """Why the hub refused this client ("authentication failed: ..."), if it did and
        the handshake is still watched (while the client connects)."""
        watch = self._handshake
        if watch is None:
            return None
        watch.read()
        return watch.failure

    def _unreachable(self, reason: str) -> str:
        if reason.startswith("authentication failed"):
            return (
                f"{reason}: the controller at {self._info.hub_url} refused this client"
                f" (cluster file {self.cluster_file}); use the cluster's own file"
            )
        return (
            f"cannot reach the controller at {self._info.hub_url}: {reason}"
            f" (cluster file {self.cluster_file})"
        )

    def _hub_request(self, msg_type: str, content: JSONDict, timeout: float) -> None:
        self._await_hub(self._send_hub(msg_type, content), timeout)

    def record_setup(
        self,
        code_or_function: str | Callable[[], object],
        targets: list[int] | None,
        timeout: float = 10.0,
    ) -> list[int]:
        """Record setup with the controller (replayed on replacement and late engines);
        the announced engines it applies to now, which the caller runs it on."""
        content: JSONDict = {"targets": targets}
        buffers: list[bytes] | None = None
        if isinstance(code_or_function, str):
            content["code"] = code_or_function
        elif callable(code_or_function):
            from ..protocol._serialize import serialize_call

            buffers = serialize_call(code_or_function, (), {})
            content["name"] = str(getattr(code_or_function, "__name__", "a function"))
        else:
            raise TypeError(f"setup takes code (a str) or a function, not {code_or_function!r}")
        metadata: JSONDict = {}
        if buffers and not self._info.authenticates_peers:
            metadata["buffers_hmac"] = self.session.signer.sign_buffers(buffers)
        message = self.session.message("setup_request", content, metadata=metadata, buffers=buffers)
        address_to(message.header, self._info.instance)
        self._to_hub(self._hub, self.session.serialize(message))
        self._await_hub(message, timeout)
        reply = self._hub_replies.pop(message.msg_id, {})
        if reply.get("status") != "ok":
            raise ValueError(f"the controller refused the setup: {reply.get('evalue', reply)}")
        engines = [i for i in reply.get("engines", []) if isinstance(i, int)]
        # Engines announced before the reply: their notification may still be on its way.
        self._pump.pump_until(lambda: all(i in self._links for i in engines), timeout)
        return [i for i in engines if i in self._links]

    def setup(self, code_or_function: str | Callable[[], object]) -> AsyncResult:
        """Run ``code_or_function`` on every engine now, and on every engine that joins
        later, replacements included, before it takes work (docs/parallel.md, "When
        things fail")."""
        result: AsyncResult = self.direct_view("all").setup(code_or_function, block=False)
        return result

    def clear_setup(self, timeout: float = 10.0) -> None:
        """Forget every recorded setup (of every client): engines that join from now on
        run none. What engines already ran stays in their namespaces."""
        self._hub_request("setup_request", {"clear": True}, timeout)
        self.recorded_setup = []

    def _await_hub(self, message: Message, timeout: float) -> None:
        """Pump until the hub answers ``message``; :class:`ClusterUnavailable` if it does not."""
        self._answered[message.msg_id] = False
        try:
            watch = self._handshake

            def done() -> bool:
                return self._answered[message.msg_id] or bool(watch and watch.failure)

            if not self._pump.pump_until(done, timeout):
                raise ClusterUnavailable(
                    f"the controller at {self._info.hub_url} did not answer within"
                    f" {timeout:g} s (cluster file {self.cluster_file}); is the cluster running?"
                )
            if watch is not None and watch.failure and not self._answered[message.msg_id]:
                raise ClusterUnavailable(self._unreachable(watch.failure))
        finally:
            del self._answered[message.msg_id]

    def _on_hub(self, frames: list[bytes]) -> None:
        try:
            message = self.session.deserialize(frames).message
            if message.msg_type == "connection_reply":
                self.recorded_setup = list(message.content.get("setup", []))
                self.joining = list(message.content.get("joining", []))
                for content in message.content.get("engines", []):
                    self._note_restart(content, announce=False)
                    self._add_engine(EngineRecord.from_content(content))
        except (ProtocolError, TypeError, AttributeError, ValueError):
            return  # a bad reply is as good as none: the caller's timeout says so
        if message.parent_id in self._answered:  # someone waits for it (not a re-query)
            self._hub_replies[message.parent_id] = message.content
            self._answered[message.parent_id] = True

    def _on_notify(self, frames: list[bytes]) -> None:
        try:
            message = self.session.deserialize(frames).message
            if message.msg_type == "registration_notification":
                record = EngineRecord.from_content(message.content)
                known = self._records.get(record.id)
                if known is not None and (known.pid, known.ports) != (record.pid, record.ports):
                    self._lose_engine(record.id, "was replaced by a new process")  # missed loss
                self._note_restart(message.content, announce=True)
                self._add_engine(record)
            elif message.msg_type == "unregistration_notification":
                engine_id = int(message.content["id"])
                reason = str(message.content.get("reason", "lost"))
                restart = message.content.get("restart")
                if isinstance(restart, dict):
                    reason += _restart_note(restart)
                    if restart.get("state") == "given up":
                        self._notice(f"engine {engine_id} {reason}", restart.get("output"))
                self._lose_engine(engine_id, reason)
        except (ProtocolError, KeyError, TypeError, ValueError):
            return

    def _note_restart(self, content: JSONDict, *, announce: bool) -> None:
        """Keep what a record says of the engine's restarts; say a new one once."""
        restarted, engine_id = content.get("restarted"), content.get("id")
        if not isinstance(restarted, dict) or not isinstance(engine_id, int):
            return
        count, reason = int(restarted.get("count", 1)), str(restarted.get("reason", "it died"))
        known = self.restarts.get(engine_id)
        self.restarts[engine_id] = EngineRestart(count, reason)
        if not announce or (known is not None and known.count >= count):
            return
        text = f"engine {engine_id} restarted after it died: {reason}"
        setup = content.get("setup")
        if isinstance(setup, dict) and setup.get("status") == "error":
            text += (
                f", but its setup {setup.get('summary', '')!r} failed:"
                f" {setup.get('ename')}: {setup.get('evalue')}"
            )
        elif isinstance(setup, dict) and setup.get("count"):
            text += f"; its setup ran again ({setup['count']} recorded)"
        self._notice(text)

    def _notice(self, text: str, detail: object = None) -> None:
        """Say ``text`` once, on stderr: in a kernel, in the output of the waiting cell."""
        if isinstance(detail, str) and detail.strip():
            text += "; its last output:\n" + detail.rstrip()
        print(f"[loom] {text}", file=sys.stderr, flush=True)

    def _add_engine(self, record: EngineRecord) -> None:
        known = self._links.get(record.id)
        if known is not None:
            if known.instance == record.instance:
                return
            # Another process under that id (its loss not seen): what it had is lost, and
            # the new one refuses requests naming the old one's instance.
            self._lose_engine(record.id, "was replaced by a new process")
        info = self._info.engine_connection(record.address, record.ports)
        link = EngineLink(
            record.id,
            info,
            self._link_session,
            self._ctx,
            self._pump,
            self._on_event,
            record.instance,
        )
        link.on_lost = self._requests_lost
        self._links[record.id] = link
        self._records[record.id] = record
        self._lost.pop(record.id, None)
        if self._balancer is not None:
            self._balancer.engine_registered(record.id)

    def _requests_lost(self, engine_id: int, msg_ids: list[str], why: str) -> None:
        """Requests whose replies cannot come back while their engine lives on (its
        direct shell broke: ``EngineLink._direct_gone``): failed, never left waiting."""
        for msg_id in msg_ids:
            error = EngineError(
                f"engine {engine_id}: the reply to request {msg_id} cannot come back ({why});"
                " the engine lives on, and if the task ran, the controller recorded its"
                " result: rc.get_result(msg_id)",
                engine_id,
            )
            self._finished(engine_id, msg_id, None, error)

    def _lose_engine(self, engine_id: int, reason: str) -> None:
        link = self._links.pop(engine_id, None)
        self._records.pop(engine_id, None)
        if link is None:
            return
        self._lost[engine_id] = reason
        for msg_id in link.tracker.pending:
            self._finished(
                engine_id, msg_id, None, EngineError(f"engine {engine_id} {reason}", engine_id)
            )
        link.close()
        if self._balancer is not None:
            self._balancer.engine_lost(engine_id, reason)

    def _check_engines(self) -> None:
        """Lose engines whose heartbeat went silent while we waited for them; fail
        load-balanced tasks that waited for an engine longer than their ``timeout``."""
        now = time.monotonic()
        for engine_id, link in list(self._links.items()):
            if not link.check(now):
                self._lose_engine(engine_id, "stopped answering its heartbeat")
        if self._balancer is not None:
            self._balancer.tick()  # load-balanced tasks past their timeout fail
        self._controller.tick()  # raises ControllerLost once the hub is silent too long

    def link(self, engine_id: int) -> EngineLink:
        """The connection to a registered engine; :class:`NoEnginesRegistered` otherwise."""
        link = self._links.get(engine_id)
        if link is None:
            self._pump.check_open()  # a closed client has no links left
            lost = self._lost.get(engine_id)
            why = f" (it was lost: {lost})" if lost else ""
            raise NoEnginesRegistered(f"engine {engine_id} is not registered{why}")
        return link

    def resolve_targets(self, targets: Targets) -> list[int]:
        """Engine ids for ``targets`` (``"all"``/``None``, an id, a slice, a list of ids)."""
        ids = self.ids
        if targets is None or targets == "all":
            chosen = ids
        elif isinstance(targets, int) and not isinstance(targets, bool):
            if targets < 0 and -len(ids) <= targets:
                chosen = [ids[targets]]
            elif targets < 0:
                raise NoEnginesRegistered(
                    f"engine {targets} counts back past the {len(ids)} engines"
                )
            else:
                chosen = [targets]
        elif isinstance(targets, slice):
            chosen = ids[targets]
        elif isinstance(targets, Iterable) and not isinstance(targets, str | bytes):
            chosen = list(targets)
            if not all(isinstance(t, int) and not isinstance(t, bool) for t in chosen):
                raise TypeError(f"targets must be engine ids (ints), not {chosen!r}")
        else:
            raise TypeError(f"targets must be 'all', an int, a slice or ints, not {targets!r}")
        if not chosen:
            raise NoEnginesRegistered("no engines are registered: start some or wait_for_engines()")
        for engine_id in chosen:
            self.link(engine_id)
        return chosen

    # -- requests --------------------------------------------------------------------------

    def send_request(
        self,
        engine_id: int,
        msg_type: str,
        content: JSONDict,
        buffers: list[bytes] | None = None,
        metadata: JSONDict | None = None,
    ) -> str:
        """Send a shell request to an engine; its msg_id. Results are routed by msg_id."""
        return self.send_requests([engine_id], msg_type, content, buffers, metadata)[0]

    def send_requests(
        self,
        engine_ids: Sequence[int],
        msg_type: str,
        content: JSONDict,
        buffers: list[bytes] | None = None,
        metadata: JSONDict | None = None,
    ) -> list[str]:
        """Send the same shell request to each engine; their msg_ids, in order. Large
        buffers for engines on this host are written to shared memory once for all
        (``_shm_client``)."""
        staged: list[list[list[object]] | None] = [None] * len(engine_ids)
        near = buffers
        if buffers and self._shm is not None:
            records = [self._records.get(i) for i in engine_ids]
            uuids = [r.uuid if r is not None else None for r in records]
            staged, near = self._shm.stage(buffers, uuids)
        try:
            links, messages = self._requests(
                engine_ids, msg_type, content, metadata, buffers, near, staged
            )
        except BaseException:  # nothing sent
            if self._shm is not None:
                for unsent in staged:
                    self._shm.discard(unsent or [])
            raise
        # Built first, then sent back to back: every JSON frame the requests share is
        # encoded once (serialize_many), and libzmq's I/O thread is woken about once for
        # all of them rather than once per engine between two requests' encoding.
        zero_copy = bool(buffers) and has_large_buffer(buffers or [])
        wire = self.session.serialize_many(messages, copy_buffers=not zero_copy)
        msg_ids: list[str] = []
        for link, message, frames, refs in zip(links, messages, wire, staged, strict=True):
            msg_id = message.msg_id
            self._kinds[msg_id] = msg_type
            try:
                # (Asked once for all; an engine sent shared-memory references asks itself.)
                link.send(
                    "shell", message, frames=frames, zero_copy=zero_copy if refs is None else None
                )
            except BaseException:  # nothing sent to this engine and the ones after it
                self._kinds.pop(msg_id, None)
                if self._shm is not None:
                    for unsent in staged[len(msg_ids) :]:
                        self._shm.discard(unsent or [])
                raise
            msg_ids.append(msg_id)
            if refs is not None and self._shm is not None:
                self._shm.sent(msg_id, refs)
        return msg_ids

    def _requests(
        self,
        engine_ids: Sequence[int],
        msg_type: str,
        content: JSONDict,
        metadata_in: JSONDict | None,
        buffers: list[bytes] | None,
        near: list[bytes] | None,
        staged: list[list[list[object]] | None],
    ) -> tuple[list[EngineLink], list[Message]]:
        """Each engine's link and request, addressed to it; the requests share their
        content and, where they can, their metadata and buffers (objects, encoded once)."""
        metadata = dict(metadata_in) if metadata_in else {}
        # Engines count each reply's outputs (EngineLink): no busy/idle needed for any.
        metadata[UNANNOUNCED] = True
        if buffers and not self._authenticated:  # one digest for all engines
            metadata["buffers_hmac"] = self.session.signer.sign_buffers(buffers)
        links: list[EngineLink] = []
        messages: list[Message] = []
        sizes: dict[int, int] = {}  # id() of a buffer list -> its largest frame (bytes)
        date = utc_now_iso()  # one stamp for the broadcast, not one per engine
        for engine_id, refs in zip(engine_ids, staged, strict=True):
            link = self.link(engine_id)
            sent = buffers if refs is None else near
            if sent:  # the largest frame of each list measured once per broadcast
                largest = sizes.get(id(sent))
                if largest is None:
                    largest = sizes[id(sent)] = max(memoryview(b).nbytes for b in sent)
                self._check_size(engine_id, largest)
            extra = metadata if refs is None else {**metadata, METADATA_KEY: refs}
            if refs is not None and "buffers_hmac" in metadata:  # of what goes on the wire
                extra["buffers_hmac"] = self.session.signer.sign_buffers(sent or [])
            message = self.session.message(
                msg_type, content, metadata=extra, buffers=sent, date=date
            )
            link.address(message)
            links.append(link)
            messages.append(message)
        return links, messages

    def _check_size(self, engine_id: int, largest: int) -> None:
        """:class:`SerializationError` if a frame (the ``largest``, in bytes) is larger than
        the engine accepts: libzmq would drop the connection without a word, and the
        request would never finish."""
        record = self._records.get(engine_id)
        limit = record.max_message_size if record is not None else 0
        if limit and largest > limit:
            raise SerializationError(
                f"an argument of {largest:,} bytes is larger than engine {engine_id} accepts"
                f" ({limit:,} bytes): start the cluster with a larger LOOM_MAX_MESSAGE_SIZE"
                " (e.g. LOOM_MAX_MESSAGE_SIZE=1G loom cluster start), or send the data in parts"
            )

    def track(self, result: AsyncResult) -> AsyncResult:
        """Route the replies to ``result``'s msg_ids to it (held weakly)."""
        self._results.add(result, result.msg_ids)
        if self._balancer is not None:
            for msg_id in result.msg_ids:
                self._balancer.deliver_early(msg_id)
        return result

    def _on_event(self, engine_id: int, event: TrackerEvent) -> None:
        if isinstance(event, OutputReceived):
            result = self._results.get(event.request_id)
            if result is not None:
                result._output(event.request_id, engine_id, event.message)
        elif isinstance(event, RequestFinished):
            value, error = self._decode(engine_id, event.request_id, event.reply)
            self._finished(engine_id, event.request_id, value, error)

    def _finished(
        self, engine_id: int, msg_id: str, value: object, error: RemoteError | None
    ) -> None:
        self._kinds.pop(msg_id, None)
        if self._shm is not None:
            self._shm.finished(msg_id)  # its shared-memory names, if the engine left them
        if self._balancer is not None and self._balancer.finished(msg_id, engine_id, value, error):
            return  # an attempt of a load-balanced task: the balancer settles the task
        result = self._results.pop(msg_id)
        if result is not None:
            result._finish(msg_id, engine_id, value, error)

    def _decode(
        self, engine_id: int, msg_id: str, reply: Message
    ) -> tuple[object, RemoteError | None]:
        content = reply.content
        status = content.get("status")
        if status == "error":
            error = RemoteError(
                str(content.get("ename", "Error")),
                str(content.get("evalue", "")),
                [str(line) for line in content.get("traceback", [])],
                engine_id,
                kind="execute" if self._kinds.get(msg_id) == "execute_request" else "apply",
            )
            return None, error
        if status == "aborted":
            return None, RemoteError("TaskAborted", "the task was aborted", (), engine_id)
        if self._kinds.get(msg_id) == "execute_request":
            return ExecuteReply(int(content.get("execution_count", 0))), None
        deserialize_object = _deserializer()
        try:
            # Unpickling runs code: only buffers the engine signed (the key) are loaded,
            # unless the transport admits no one else (ControllerInfo.authenticates_peers).
            if not self._authenticated:
                digest = reply.metadata.get("buffers_hmac")
                self.session.signer.verify_buffers(reply.buffers, digest)
            buffers = reply.buffers
            if METADATA_KEY in reply.metadata:  # large buffers wait in shared memory
                if self._shm is None:
                    raise SharedMemoryError(
                        "a reply through shared memory, which this client has not"
                    )
                buffers = self._shm.receive(buffers, reply.metadata)
            return deserialize_object(buffers), None
        except Exception as exc:  # a result this process cannot unpickle
            return None, RemoteError(type(exc).__name__, str(exc), (), engine_id)

    # -- records (the controller's database; issue 13) ---------------------------------

    def get_result(
        self,
        indices_or_msg_ids: str | Sequence[str] | AsyncResult,
        block: bool | None = None,
        owner: bool = True,
    ) -> AsyncResult:
        """The result of tasks by msg_id (or an ``AsyncResult``'s), also ones another
        client sent (ipyparallel's ``get_result``): from the controller's records,
        finished or watched until they are. :class:`KeyError` for a msg_id the controller
        has no record of. ``block=True``: return once the result is in. (``owner``:
        accepted; a client keeps no result cache to own.)"""
        ids = indices_or_msg_ids
        if isinstance(ids, AsyncResult):  # single again if it was (one target, one task)
            ids = ids.msg_ids[0] if ids._single else ids.msg_ids
        result = self._controller.get_result(ids)
        if self.block if block is None else block:
            result.wait()
        return result

    def result_status(
        self, msg_ids: str | Sequence[str], status_only: bool = True
    ) -> dict[str, Any]:
        """``{"completed": [...], "pending": [...], "unknown": [...]}`` for ``msg_ids``;
        with ``status_only=False`` also each completed task's result by its msg_id (an
        error as the exception)."""
        status: dict[str, Any] = self._controller.result_status(msg_ids)
        if not status_only and status["completed"]:
            done = self._controller.get_result(status["completed"])
            values = done.get(return_exceptions=True)
            status.update(zip(status["completed"], values, strict=True))
        return status

    def db_query(
        self, query: dict[str, Any], keys: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Task records matching a mongo-style ``query`` (``$in``, ``$nin``, ``$eq``,
        ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``), with ``keys`` (default: all but
        the buffers); dates are ``datetime``. As ipyparallel's ``Client.db_query``."""
        return self._controller.db_query(query, keys)

    def purge_hub_results(self, jobs: Jobs = (), targets: Targets = ()) -> None:
        """Make the controller forget task records (ipyparallel's): those of ``jobs``
        (``"all"``, a msg_id, an ``AsyncResult`` or a list of those; a load-balanced
        task's id covers its attempts) and the finished ones of engines ``targets`` (ids
        as views take them). Afterwards ``get_result`` of them raises ``KeyError``,
        ``db_query`` and ``hub_history`` omit them. A task still running keeps its record:
        named by id it is a :class:`RuntimeError` and nothing is purged; on ``targets`` or
        under ``"all"`` it is left. :class:`ValueError` if both are empty,
        :class:`TypeError` for a job that is neither a msg_id nor an ``AsyncResult``."""
        purge_hub(self, jobs, targets)

    def purge_local_results(self, jobs: Jobs = (), targets: Targets = ()) -> None:
        """ipyparallel's: clear the client's cache of these results. This client keeps no
        such cache (a result lives in its ``AsyncResult``, freed when that is dropped),
        so this only checks the arguments as :meth:`purge_hub_results` does and raises
        :class:`RuntimeError` for a task named that this client still waits for (with
        ``"all"``: any; with ``targets``: any sent to them), as ipyparallel does."""
        purge_local(self, jobs, targets)

    def purge_results(self, jobs: Jobs = (), targets: Targets = ()) -> None:
        """:meth:`purge_local_results` then :meth:`purge_hub_results` (ipyparallel's)."""
        self.purge_local_results(jobs, targets)
        self.purge_hub_results(jobs, targets)

    def purge_everything(self) -> None:
        """``purge_results("all")``: every finished task's record goes; a
        :class:`RuntimeError` while this client still waits for a task."""
        self.purge_results("all")

    def queue_status(self, targets: Targets = "all", verbose: bool = False) -> dict[Any, Any]:
        """What the engines have to do and have done (ipyparallel's): ``{engine_id:
        {"queue": n, "completed": n, "tasks": n}, "unassigned": n}``, or one engine's dict
        for an int ``targets``; with ``verbose``, lists of msg_ids instead of counts.

        ``queue``: requests on the engine not finished (queued or running): this
        client's, and any other client's the controller's records show running (another
        client's requests still queued there are not known until they start);
        ``completed``: the engine's finished tasks in the controller's records (all
        clients, until purged); ``tasks``: this client's load-balanced tasks on it;
        ``unassigned``: this client's load-balanced tasks waiting for an engine."""
        ids = self.resolve_targets(targets)
        known = self._controller.call("queue_request", {"verbose": verbose}).content
        engines = known.get("engines", {})
        balancer = self._balancer
        status: dict[Any, Any] = {}
        for engine_id in ids:
            link = self._links.get(engine_id)
            mine = list(link.tracker.pending) if link is not None else []
            recorded = engines.get(str(engine_id), {})
            # A task of this process that finished here may still be pending in the
            # records (its reply's record follows within a record window): not queued.
            running = [
                m
                for m in recorded.get("pending", [])
                if not made_here(m) or self._is_outstanding(m)
            ]
            queue = list(dict.fromkeys([*mine, *running]))
            tasks = [m for m in mine if balancer is not None and balancer.is_attempt(m)]
            completed = recorded.get("completed", [] if verbose else 0)
            if verbose:
                status[engine_id] = {"queue": queue, "completed": completed, "tasks": tasks}
            else:
                status[engine_id] = {
                    "queue": len(queue),
                    "completed": completed,
                    "tasks": len(tasks),
                }
        unassigned = balancer.unassigned() if balancer is not None else []
        status["unassigned"] = unassigned if verbose else len(unassigned)
        return status[ids[0]] if isinstance(targets, int) else status

    def hub_history(self) -> list[str]:
        """Every task the controller has a record of, once each, by submission time
        (ipyparallel's): a load-balanced task by its id (``ar.msg_ids``), any other by its
        msg_id. Each is an id ``get_result`` takes."""
        return hub_history(self)

    def resubmit(
        self,
        indices_or_msg_ids: str | Sequence[str],
        metadata: dict[str, Any] | None = None,
        block: bool | None = None,
    ) -> AsyncResult:
        """Run recorded apply tasks again, load-balanced; the new tasks' result
        (``block=True``: once it is in). ``metadata`` is accepted for ipyparallel's sake:
        the tasks keep their recorded metadata."""
        result = self._controller.resubmit(indices_or_msg_ids)
        if self.block if block is None else block:
            result.wait()
        return result

    # -- views -----------------------------------------------------------------------------

    def __getitem__(self, key: Targets) -> DirectView:
        return self.direct_view(key)

    def direct_view(self, targets: Targets = "all", **flags: Any) -> DirectView:
        """A view on ``targets``; an int gives single results, anything else lists.
        ``flags`` as ``set_flags`` takes them (``block=True``)."""
        from ._views import DirectView

        view = DirectView(self, targets)
        view.set_flags(**flags)
        return view

    def executor(self, targets: Targets = None) -> ViewExecutor:
        """A ``concurrent.futures.Executor`` on a load-balanced view of ``targets``."""
        return self.load_balanced_view(targets).executor

    def load_balanced_view(self, targets: Targets = None, **flags: Any) -> LoadBalancedView:
        """A view that runs each task on whichever of ``targets`` (default: all) is free;
        ``flags`` as ``set_flags`` takes them (``retries=3, retry_on="engine-death"``)."""
        from ._views import LoadBalancedView

        view = LoadBalancedView(self, targets)
        view.set_flags(**flags)
        return view

    def select(
        self,
        label: str | None = None,
        *,
        labels: Iterable[str] | str | None = None,
        resources: Mapping[str, float | str] | str | None = None,
    ) -> DirectView:
        """A DirectView of the engines registered now that carry ``label`` (and every one
        of ``labels``) and have at least ``resources`` in all; :class:`NoEnginesRegistered`
        saying what each engine has if none does. The view's targets are those ids."""
        from ..protocol._engine_traits import labels_from, resources_from
        from ..scheduler._fit import EngineTraits, can_hold, describe_misfit

        wanted = labels_from(labels) | labels_from(label)
        amounts = resources_from(resources)
        self._pump.drain()
        traits = {
            engine_id: EngineTraits(frozenset(record.labels), record.resources)
            for engine_id, record in self._records.items()
            if engine_id in self._links
        }
        ids = [e for e in sorted(traits) if can_hold(traits[e], wanted, amounts)]
        if not ids:
            if not traits:
                raise NoEnginesRegistered("no engines are registered: start some first")
            if not (wanted or amounts):
                return self.direct_view(sorted(traits))
            raise NoEnginesRegistered(describe_misfit(wanted, amounts, traits))
        return self.direct_view(ids)

    def engines_info(self) -> dict[int, dict[str, Any]]:
        """What the hub said of each registered engine: ``pid``, ``address``, ``labels``
        (a sorted list) and ``resources`` (name -> amount), by engine id."""
        self._pump.drain()
        return {
            engine_id: {
                "pid": record.pid,
                "address": record.address,
                "labels": list(record.labels),
                "resources": dict(record.resources),
            }
            for engine_id, record in sorted(self._records.items())
            if engine_id in self._links
        }

    def activate(self, targets: Targets = "all", suffix: str = "") -> DirectView:
        """Register the ``%px`` magics for a blocking view of ``targets``; the view.

        As in ipyparallel: ``suffix="0"`` names them ``%px0``, ``%%px0``, ``%pxresult0``,
        ``%pxconfig0``, ``%autopx0``, so several views can have magics at once. Works in
        Loom's kernel and in IPython (ipykernel); elsewhere it warns and registers nothing.
        """
        from ..magics._px_activate import activate

        return activate(self, targets, suffix)

    @property
    def balancer(self) -> Balancer:
        if self._balancer is None:
            from ._balancer import Balancer

            self._balancer = Balancer(self, sorted(self._links))
        return self._balancer

    # -- waiting and control ---------------------------------------------------------------

    @property
    def outstanding(self) -> set[str]:
        """msg_ids of requests this client sent that have not finished: direct ones, and
        load-balanced tasks by their ids (their ``ar.msg_ids``), whether sent to an
        engine or still waiting for one (an attempt's own msg_id is the balancer's)."""
        pending = {msg_id for link in self._links.values() for msg_id in link.tracker.pending}
        balancer = self._balancer
        if balancer is None:
            return pending
        return {m for m in pending if not balancer.is_attempt(m)} | balancer.unsettled

    def _is_outstanding(self, msg_id: str) -> bool:
        """``msg_id in self.outstanding``, without building the set."""
        balancer = self._balancer
        if balancer is not None and balancer.knows(msg_id):
            return True
        return any(link.tracker.is_pending(msg_id) for link in self._links.values())

    def _finished_all(self, pending: set[str]) -> bool:
        """Whether every id of ``pending`` finished; finished ones are removed as found, so
        a wait over many tasks costs one look per task, not one per task per wake."""
        while pending:
            msg_id = next(iter(pending))
            if self._is_outstanding(msg_id):
                return False
            pending.discard(msg_id)
        return True

    def spin(self) -> None:
        """Read what has arrived from the engines and the controller, without waiting
        (ipyparallel's; a blocking call or ``await`` does this by itself)."""
        self._pump.check_open()
        self._pump.drain()

    def wait(
        self,
        jobs: Jobs = None,
        timeout: float = -1,
    ) -> bool:
        """Wait for ``jobs`` (results or msg_ids; default: everything outstanding); done?"""
        named = _msg_ids_of(jobs)
        pending = self.outstanding if named is None else named
        limit = None if timeout < 0 else timeout
        return self._pump.pump_until(lambda: self._finished_all(pending), limit)

    def wait_interactive(
        self,
        jobs: Jobs = None,
        interval: float = 1.0,
        timeout: float = -1,
    ) -> None:
        """Wait as :meth:`wait` does, printing ``done/total tasks finished after N s`` every
        ``interval`` seconds; :class:`TimeoutError` if not all are done within ``timeout``."""
        named = _msg_ids_of(jobs)
        pending = self.outstanding if named is None else named
        total, start = len(pending), time.monotonic()
        deadline = None if timeout < 0 else start + timeout

        def progress() -> str:
            done = total - len(pending)
            return f"{done}/{total} tasks finished after {time.monotonic() - start:.0f} s"

        while not self._finished_all(pending):
            if deadline is not None and time.monotonic() >= deadline:
                print(f"\r{progress()}")
                raise ParallelTimeout(f"not all tasks finished after {timeout:g} s")
            step = interval if deadline is None else min(interval, deadline - time.monotonic())
            self._pump.pump_until(lambda: self._finished_all(pending), max(step, 0.0))
            print(f"\r{progress()}", end="", flush=True)
        print(f"\r{progress()}")

    def abort(
        self,
        jobs: Jobs = None,
        targets: Targets = None,
        block: bool | None = None,
    ) -> None:
        """Abort tasks that have not started: ``jobs`` (msg_ids or results), or every
        outstanding one on ``targets``, or, with neither, every outstanding one. Aborted
        tasks fail with ``TaskAborted``. (``block``: accepted; the engines are told at
        once and nothing waits for their answer, which the aborted results carry.)"""
        named = _msg_ids_of(jobs)
        if named is None and targets is not None:
            links = [self.link(engine_id) for engine_id in self.resolve_targets(targets)]
            ids = [msg_id for link in links for msg_id in link.tracker.pending]
        else:
            ids = list(self.outstanding if named is None else named)
        if self._balancer is not None:
            ids = self._balancer.abort(ids)
        for engine_id, link in list(self._links.items()):
            self.abort_on_engine(engine_id, [m for m in ids if link.tracker.is_pending(m)])

    def abort_on_engine(self, engine_id: int, msg_ids: list[str]) -> None:
        """Ask an engine to answer ``msg_ids`` with ``aborted`` if it has not run them."""
        link = self._links.get(engine_id)
        if link is not None and msg_ids:
            message = self.session.message("abort_request", {"msg_ids": msg_ids})
            link.send("control", message, expects_idle=False)

    def send_signal(self, sig: int, targets: Targets = None, block: bool | None = None) -> None:
        """Send signal ``sig`` to the engines' processes (SIGINT interrupts their task).
        (``block``: accepted; the signals are sent at once, not waited for.)"""
        try:
            sig = signal.Signals(sig)
        except ValueError:
            raise ValueError(f"{sig!r} is not a signal (e.g. signal.SIGINT)") from None
        for engine_id in self.resolve_targets(targets):
            message = self.session.message("signal_request", {"sig": int(sig)})
            self.link(engine_id).send("control", message, expects_idle=False)

    def shutdown(
        self,
        targets: Targets = "all",
        restart: bool = False,
        hub: bool = False,
        block: bool | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Stop engines (``targets``) and, with ``hub=True``, the controller and its cluster.
        Returns once the controller has stopped them (``block`` is accepted: this always
        waits, at most ``timeout`` seconds). ``restart=True`` is refused, as in ipyparallel:
        a cluster started with restarts on replaces engines that die by themselves."""
        if restart:
            raise NotImplementedError(
                "shutdown(restart=True) is not supported (nor in ipyparallel): stop the"
                " engines and start a new cluster; a cluster started with restarts on"
                " replaces engines that die by themselves"
            )
        ids = None if targets in ("all", None) and hub else self.resolve_targets(targets)
        self._hub_request("shutdown_request", {"targets": ids, "hub": hub}, timeout)

    def close(self, linger: int | None = None) -> None:
        """Close every socket; the client cannot be used afterwards (:class:`ClientClosed`).
        Results still pending fail with :class:`ClientClosed`: nothing would finish them."""
        if self._closed:
            return
        self._closed = True
        pending = [r for r in self._results.pop_all() if not r.done()]
        self._end_handshake_watch()
        self._pump.unwatch()
        for link in self._links.values():
            link.close()
        self._links.clear()
        self._controller.close()
        if self._shm is not None:
            self._shm.close()
        for sock in (self._hub, self._notify):
            self._pump.remove(sock)
            sock.close(linger=0)
        self._pump.close()
        for result in pending:
            with contextlib.suppress(InvalidStateError):  # settled by a callback meanwhile
                result.set_exception(
                    ClientClosed(
                        "the Client was closed before this result arrived; a new Client"
                        f" can fetch it from the controller: get_result({result.msg_ids!r})"
                    )
                )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client cluster={self._info.cluster_id} engines={sorted(self._links)}>"

    @property
    def info(self) -> ControllerInfo:
        return self._info


def _msg_ids_of(jobs: Jobs) -> set[str] | None:
    """The msg_ids ``jobs`` names (``_purge_client.msg_ids_of``: a msg_id, a result, or a list
    of either; :class:`TypeError` naming anything else); None for everything
    outstanding (``None`` or ``"all"``)."""
    ids, _ = msg_ids_of(jobs)
    return None if jobs is None or ids == "all" else set(ids)


_deserialize: Callable[[list[bytes]], object] | None = None


def _deserializer() -> Callable[[list[bytes]], object]:
    """``deserialize_object``, imported at the first result (not with the client, which
    may only ever ``execute``), then kept: a function-level import cost ~3 us a reply."""
    global _deserialize
    if _deserialize is None:
        from ..protocol._serialize import deserialize_object

        _deserialize = deserialize_object
    return _deserialize


def _restart_note(restart: JSONDict) -> str:
    """What an ``unregistration_notification``'s ``restart`` adds to the loss reason."""
    match restart.get("state"):
        case "restarting":
            return "; it is being restarted"
        case "given up":
            return f"; {restart.get('message', 'not restarted')}"
        case "failed":
            return f"; it cannot be restarted: {restart.get('reason', '')}"
        case "off" if restart.get("reason"):
            return f"; not restarted: {restart['reason']}"
    return ""
