"""The client's view of its controller: is it there, and what do its records say.

Theory of operation
-------------------
A client talks to engines directly; the controller is needed only to learn of engines
and, since issue 13, to read the task records it keeps. This link has its own DEALER to
the hub, read by the client's pump (no thread):

- **Controller lost.** While a caller waits (the pump's tick, at least every 0.5 s) the
  link pings the hub each second (``engine_ping_request`` with no engine: any answer
  will do). When a ping has gone unanswered for :data:`LOST_AFTER` seconds, the tick
  raises :class:`ControllerLost` out of whatever blocking call is waiting (``get()``,
  ``wait()``, ``wait_for_engines()``...): never a silent wait forever. Nothing is thrown
  away: requests already sent to live engines stay pending, their replies still land
  (``ar.ready()``), and a controller restored at the same address is found again by the
  next ping (ZeroMQ reconnects).
- **Records.** ``get_result`` / ``result_status`` / ``db_query`` / ``resubmit`` ask the
  hub (``result_request``, ``db_request``). A result still running somewhere is watched:
  the hub is asked again every :data:`RESULT_POLL` seconds while someone waits.
"""

from __future__ import annotations

import datetime
import itertools
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import zmq

from kernel.protocol import JSONDict, Message, ProtocolError
from kernel.protocol._freshness import address_to
from kernel.protocol._message import made_here

from .._errors import ClusterUnavailable, ControllerLost, RemoteError
from ._asyncresult import AsyncResult
from ._engine_link import _socket

if TYPE_CHECKING:
    from ._pool_client import Client

__all__ = ["LOST_AFTER", "ControllerLink"]

#: A ping unanswered this long means the controller is lost (seconds).
LOST_AFTER = 5.0
PING_INTERVAL = 1.0
#: A hub request not answered in this long is sent again (seconds).
RESEND = 2.0
#: How long ``get_result`` asks again for tasks this process sent that the controller has
#: no record of yet: an engine reports a task with its reply (within 100 ms: the record
#: window) or, while it runs, at its next ping (within a second).
RECORD_WAIT = 2.0
#: How many ids purged by name a client remembers (``ControllerLink.forgotten``).
PURGED_KEPT = 100_000
#: How often results still running elsewhere are asked for again while someone waits.
RESULT_POLL = 0.5
#: Record keys holding dates (given back as ``datetime``, as ipyparallel does).
DATE_KEYS = ("submitted", "started", "completed", "received")
_DONE = ("ok", "error", "aborted", "failed")


class Supervisor(Protocol):
    """Who can start the controller again (a ``Cluster(supervise=True)``)."""

    def controller_exited(self) -> bool: ...

    def revive(self) -> bool: ...


class ControllerLink:
    """See the module docstring; one per :class:`Client`."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._sock = _socket(client._ctx, zmq.DEALER, client.info.hub_url, client.info.curve)
        client._pump.add(self._sock, self._on_reply)
        #: When the oldest unanswered ping was sent (``None``: none unanswered).
        self._unanswered: float | None = None
        self.lost = False
        self._closed = False
        self._replies: dict[str, Message | None] = {}
        #: Results waiting for records still pending at the hub: msg_id -> result.
        self._watched: dict[str, AsyncResult] = {}
        self._polled = 0.0
        #: Ids this client purged by name (the newest :data:`PURGED_KEPT`): asked for
        #: again, they are unknown at once, said to be purged, not waited for.
        self._purged: dict[str, None] = {}
        #: Set by a supervising ``Cluster``: a controller that exited is restarted with
        #: ``--restore`` from the tick, and the wait goes on instead of raising.
        self.supervisor: Supervisor | None = None
        #: Whether the controller ever answered: a client that never reached it is told so
        #: by its own connect timeout ("is the cluster running?"), not as "lost".
        self._heard = False
        self._pinged = time.monotonic()
        self._send("engine_ping_request", {"uuid": ""})  # answered while the client connects

    def close(self) -> None:
        self._closed = True
        self._client._pump.remove(self._sock)
        self._sock.close(linger=0)

    # -- liveness -------------------------------------------------------------------

    def tick(self) -> None:
        """Called while someone waits: ping, poll watched results, raise if lost."""
        if self._closed:
            return
        supervisor = self.supervisor
        if supervisor is not None and supervisor.controller_exited() and supervisor.revive():
            self._unanswered = None  # a new controller: it gets its own LOST_AFTER
            return
        now = time.monotonic()
        if now - self._pinged >= PING_INTERVAL:
            self._pinged = now
            if self._unanswered is None:
                self._unanswered = now
            self._send("engine_ping_request", {"uuid": ""})
        if self._watched and now - self._polled >= RESULT_POLL:
            self._polled = now
            self._send("result_request", {"msg_ids": list(self._watched)})
        if self._heard and self._unanswered is not None and now - self._unanswered > LOST_AFTER:
            self.lost = True
            self._unanswered = now  # the next wait gets its own LOST_AFTER
            raise ControllerLost(
                f"controller lost: the controller at {self._client.info.hub_url} has not"
                f" answered for {LOST_AFTER:g} s. Requests already sent to live engines stay"
                " pending and their results still arrive; restart it with `loom cluster"
                " start --restore`, then rc.get_result(msg_id) reads every finished result"
            )

    def _send(self, msg_type: str, content: JSONDict) -> str:
        session = self._client.session
        message = session.message(msg_type, content)
        address_to(message.header, self._client.info.instance)  # the hub's start (replays)
        # Never blocks: no connection within seconds is ClusterUnavailable (``_send``).
        self._client._to_hub(self._sock, session.serialize(message))
        return message.msg_id

    def _on_reply(self, frames: list[bytes]) -> None:
        try:
            message = self._client.session.deserialize(frames).message
        except ProtocolError:
            return
        self._unanswered = None
        self._heard = True
        self.lost = False
        if message.parent_id in self._replies:
            self._replies[message.parent_id] = message
        elif message.msg_type == "result_reply":
            self._settle(message)

    def call(self, msg_type: str, content: JSONDict, timeout: float = 10.0) -> Message:
        """Send a hub request and pump until its reply; the reply.

        The request is sent again every :data:`RESEND` seconds until answered (they are
        all reads or idempotent): one sent while the controller was dying or being
        restored is lost with its connection, and ZeroMQ does not say so."""
        self._client._pump.check_open()
        sent: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                msg_id = self._send(msg_type, content)
                sent.append(msg_id)
                self._replies[msg_id] = None
                left = deadline - time.monotonic()
                if self._client._pump.pump_until(
                    lambda: any(self._replies[m] is not None for m in sent), min(RESEND, left)
                ):
                    break
                if time.monotonic() >= deadline:
                    raise ClusterUnavailable(
                        f"the controller at {self._client.info.hub_url} did not answer"
                        f" {msg_type} within {timeout:g} s"
                    )
            reply = next(r for m in sent if (r := self._replies[m]) is not None)
        finally:
            for m in sent:
                del self._replies[m]
        if reply.content.get("status") != "ok":
            raise ValueError(str(reply.content.get("evalue", reply.content)))
        return reply

    # -- records --------------------------------------------------------------------

    def get_result(self, msg_ids: str | Sequence[str]) -> AsyncResult:
        single = isinstance(msg_ids, str)
        ids = [msg_ids] if isinstance(msg_ids, str) else list(msg_ids)
        if not all(isinstance(m, str) for m in ids):
            raise TypeError("msg_ids must be a msg_id string or a list of them")
        own = [self._client._results.get(m) for m in ids]
        if single and own[0] is not None:  # this client's own request, still tracked
            return own[0]
        reply = self.records_of(ids)
        unknown = reply.content.get("unknown", [])
        if unknown and all(m in self._purged for m in unknown):
            raise KeyError(
                f"the records of {', '.join(unknown)} were purged (purge_hub_results):"
                " the controller has them no more"
            )
        if unknown:
            raise KeyError(
                f"the controller has no record of {', '.join(unknown)}: not a task of this"
                " cluster, or not reported yet (an engine reports a task with its reply, or"
                " within a second of its start: ask again then)"
            )
        result = AsyncResult(self._client, ids, fname="get_result", single=single)
        for msg_id in ids:
            self._watched[msg_id] = result
        self._settle(reply)
        return result

    def _settle(self, reply: Message) -> None:
        for record, frames in _records_with_buffers(reply):
            buffers = frames.get("result_buffers", [])
            status = record.get("status")
            msg_id = str(record.get("asked", record["msg_id"]))
            result = self._watched.get(msg_id)
            if result is None or status not in _DONE:
                continue
            del self._watched[msg_id]
            engine = record.get("engine_id")
            engine_id = engine if isinstance(engine, int) else -1
            value, error = self._decode(engine_id, record, buffers)
            result._finish(msg_id, engine_id, value, error)

    def _decode(
        self, engine_id: int, record: Mapping[str, Any], buffers: list[bytes]
    ) -> tuple[object, RemoteError | None]:
        content = record.get("result_content") or {}
        metadata = record.get("result_metadata") or {}
        status = content.get("status", record.get("status"))
        if status == "aborted":
            return None, RemoteError("TaskAborted", "the task was aborted", (), engine_id)
        if status != "ok":
            return None, RemoteError(
                str(content.get("ename", "Error")),
                str(content.get("evalue", "")),
                [str(line) for line in content.get("traceback", [])],
                engine_id,
            )
        omitted = metadata.get("loom_result_omitted")
        if omitted:
            return None, RemoteError(
                "ResultNotRecorded",
                f"the task succeeded, but its result ({omitted:,} bytes) was larger than the"
                " controller records (LOOM_RECORD_RESULT_LIMIT in the engines' environment,"
                " LOOM_HUB_MAX_MESSAGE_SIZE in the controller's)",
                (),
                engine_id,
            )
        from ..protocol._serialize import deserialize_object

        try:
            if not self._client.info.authenticates_peers:
                signer = self._client.session.signer
                signer.verify_buffers(buffers, metadata.get("buffers_hmac"))
            return deserialize_object(buffers), None
        except Exception as exc:  # a result this process cannot unpickle
            return None, RemoteError(type(exc).__name__, str(exc), (), engine_id)

    def records_of(
        self,
        ids: list[str],
        keys: list[str] | None = None,
        *,
        wait: bool = True,
        finished: bool = False,
    ) -> Message:
        """The hub's ``result_reply`` for ``ids`` (``keys``: the record keys wanted; None:
        the result's). With ``wait``, ids this process made that the hub does not know yet
        (and, with ``finished``, whose record still says running: tasks that finished
        here) are asked for again for up to :data:`RECORD_WAIT` seconds: their records
        are on their way."""
        wanted = keys if keys is None or not finished or "status" in keys else [*keys, "status"]
        content: JSONDict = {"msg_ids": ids} if wanted is None else {"msg_ids": ids, "keys": wanted}
        deadline = time.monotonic() + RECORD_WAIT
        while True:
            reply = self.call("result_request", content)
            late = list(reply.content.get("unknown", []))
            if finished:
                records = reply.content.get("records", [])
                late += [str(r.get("asked")) for r in records if r.get("status") not in _DONE]
            if not (wait and late and all(made_here(m) and m not in self._purged for m in late)):
                return reply
            if time.monotonic() >= deadline:
                return reply
            self._client._pump.pump_until(lambda: False, 0.05)  # reads while it waits

    def forgotten(self, msg_ids: list[str]) -> None:
        """The controller purged ``msg_ids`` (by name): remember them, the newest
        :data:`PURGED_KEPT`, so that asking for them again is answered at once."""
        purged = self._purged
        purged.update(dict.fromkeys(msg_ids))
        for old in list(itertools.islice(purged, max(len(purged) - PURGED_KEPT, 0))):
            del purged[old]

    def task_records(
        self, ids: list[str], keys: list[str], *, finished: bool
    ) -> dict[str, dict[str, Any]]:
        """The records of ``ids`` (``keys`` of each, dates as ``datetime``) by the id asked
        (a load-balanced task's id, or a msg_id); ids without a record are left out.
        ``finished``: the tasks finished here, so their records are waited for until they
        say so (``records_of``)."""
        reply = self.records_of(ids, keys, wait=finished, finished=finished)
        out = {}
        for record in reply.content.get("records", []):
            for key in DATE_KEYS:
                if isinstance(record.get(key), str):
                    record[key] = _parse_date(record[key])
            out[str(record.get("asked"))] = record
        return out

    def result_status(self, msg_ids: str | Sequence[str]) -> dict[str, list[str]]:
        ids = [msg_ids] if isinstance(msg_ids, str) else list(msg_ids)
        reply = self.call("result_request", {"msg_ids": ids})
        status: dict[str, list[str]] = {"completed": [], "pending": [], "unknown": []}
        for record in reply.content.get("records", []):
            done = record.get("status") in _DONE
            status["completed" if done else "pending"].append(str(record["asked"]))
        outstanding = self._client.outstanding
        for msg_id in reply.content.get("unknown", []):
            status["pending" if msg_id in outstanding else "unknown"].append(msg_id)
        return status

    def db_query(
        self, query: Mapping[str, Any], keys: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        wire = {key: _to_wire(test) for key, test in query.items()}
        content: JSONDict = {"query": wire, "keys": list(keys) if keys is not None else None}
        reply = self.call("db_request", content)
        out = []
        for record, buffers in _records_with_buffers(reply):
            for key in DATE_KEYS:
                if isinstance(record.get(key), str):
                    record[key] = _parse_date(record[key])
            out.append({**record, **buffers})
        return out

    def resubmit(self, msg_ids: str | Sequence[str]) -> AsyncResult:
        """Run recorded tasks again, load-balanced; the new tasks' result."""
        ids = [msg_ids] if isinstance(msg_ids, str) else list(msg_ids)
        reply = self.call(
            "result_request", {"msg_ids": ids, "keys": ["msg_id", "header", "buffers"]}
        )
        found = {str(r["asked"]): {**r, **b} for r, b in _records_with_buffers(reply)}
        missing = [m for m in ids if m not in found]
        if missing:
            raise KeyError(f"the controller has no record of {', '.join(missing)}")
        for msg_id in ids:
            if found[msg_id]["header"].get("msg_type") != "apply_request":
                raise ValueError(f"{msg_id} is not an apply task: only those are resubmitted")
            if not found[msg_id].get("buffers"):
                raise ValueError(
                    f"{msg_id} cannot be resubmitted: its arguments were larger than the"
                    " controller records (LOOM_RECORD_REQUEST_LIMIT, LOOM_HUB_MAX_MESSAGE_SIZE)"
                )
        balancer = self._client.balancer
        new_ids = [
            balancer.submit(list(found[m]["buffers"]), None, retries=0, retry_on="any") for m in ids
        ]
        self.call(
            "resubmitted_request", {"pairs": [list(p) for p in zip(ids, new_ids, strict=True)]}
        )
        result = AsyncResult(
            self._client, new_ids, fname="resubmit", single=isinstance(msg_ids, str)
        )
        return self._client.track(result)


def _records_with_buffers(reply: Message) -> list[tuple[dict[str, Any], dict[str, list[bytes]]]]:
    """The reply's records, each with its frames (sent as counts, in order)."""
    out: list[tuple[dict[str, Any], dict[str, list[bytes]]]] = []
    offset = 0
    for record in reply.content.get("records", []):
        frames: dict[str, list[bytes]] = {}
        for key in ("buffers", "result_buffers"):
            count = record.get(key)
            if isinstance(count, int):
                frames[key] = [bytes(b) for b in reply.buffers[offset : offset + count]]
                offset += count
        out.append((record, frames))
    return out


def _to_wire(test: object) -> object:
    if isinstance(test, datetime.datetime):
        return _iso(test)
    if isinstance(test, Mapping):
        return {op: _to_wire(value) for op, value in test.items()}
    if isinstance(test, list | tuple):
        return [_to_wire(value) for value in test]
    return test


def _iso(moment: datetime.datetime) -> str:
    """A date as the Jupyter headers write it (UTC, ``Z``), so that text compares in order."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    utc = moment.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_date(text: str) -> datetime.datetime | str:
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return text
