"""The hub's record requests: engines store task records, clients read them back.

=====================  ==================================================================
``record_request``     engine: ``{"uuid", "id", "link", "seq", "ack", "rows": [[kind,
                       msg_id, task_id, submitted, client_uuid, started, completed,
                       status], ...], "sizes": [...]}`` and one buffer: each row's
                       frames in order (:func:`rows_of`: JSON text and packed buffers,
                       stored as they come), cut by ``sizes`` (:func:`split_frames`).
                       ``link`` names the engine's hub link, ``seq`` numbers its
                       batches (1, 2, ...); ``hmac``: the buffer's digest
                       (``Signer.sign_buffers``) where the transport does not
                       authenticate peers (tcp without Curve), checked by the hub
``record_reply``       ``{"status": "ok"}`` once the batch is committed, only if it asked
                       (``ack``: sync records, large buffers); the others are confirmed
                       by the answer to the engine's next ping (:meth:`Records.committed`)
``result_request``     client: ``{"msg_ids": [...], "keys": [...] | null}``; an id is a
                       msg_id or a load-balanced task id (``metadata.task_id``)
``result_reply``       ``{"status": "ok", "records": [{msg_id, status, engine_id,
                       result_content, result_metadata, ..., "asked"}], "unknown": [...]}``
                       with each record's result buffers in order
``db_request``         client: ``{"query": {...}, "keys": [...] | null}``
``db_reply``           ``{"status": "ok", "records": [...]}``; ``buffers`` and
                       ``result_buffers`` keys travel as counts (``"buffers": n``) with
                       the frames in order
``resubmitted_request``  client: ``{"pairs": [[old, new]...]}`` (sets ``resubmitted``)
``purge_request``      client: ``{"msg_ids": [...] | "all", "engine_ids": [...] | null}``
                       (``_purge``): forget the records of those ids (msg_ids or task
                       ids), the finished ones of those engines, or every finished one
``purge_reply``        ``{"status": "ok", "purged": n, "running": [...]}``; ``running``:
                       named ids whose task is still pending, and then nothing was purged
``history_request``    client: ``{}``
``history_reply``      ``{"status": "ok", "history": [id, ...]}``: every task recorded,
                       once, by submission time (:meth:`TaskDB.history`)
``queue_request``      client: ``{"verbose": bool}``
``queue_reply``        ``{"status": "ok", "engines": {"0": {"pending": [msg_id...],
                       "completed": n | [msg_id...]}}}``: per engine, its records still
                       pending and its finished ones (ids with ``verbose``)
=====================  ==================================================================

Nothing here blocks for long: a batch is one SQLite transaction (WAL), on the hub's loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from kernel.protocol import JSONDict, MalformedMessage, Message, Reply, utc_now_iso

from ._db import QueryError, TaskDB
from ._purge import PurgeRequest, Tombstones

__all__ = ["COMMIT_WINDOW", "Records"]

#: Seconds a batch that asked for no reply may wait to be committed with the batches
#: that follow it (``Records.flush``). While it waits, its engine still holds it
#: unconfirmed, so a controller killed meanwhile loses nothing: the engine sends it again
#: when it registers with the restored one (docs/architecture.md, "Task records"); an
#: engine killed meanwhile loses nothing either: the batch is in the open transaction.
#: Why 100 ms and not 20: 16 engines each send a batch per record window (100 ms), and a
#: commit (and the loop's wake for its timer) every 20 ms was ~10% of the hub's CPU
#: for records (a 16-engine broadcast loop: 2.57 -> 2.29 and 2.01 -> 1.82 ms a call).
COMMIT_WINDOW = 0.1


class Records:
    """Answers the record requests from one :class:`TaskDB`."""

    def __init__(self, db: TaskDB, durability: str = "async") -> None:
        self.db = db
        #: What engines are told at registration: ``async`` or ``sync``.
        self.durability = durability
        #: Engine uuid -> (its link, first and last batch committed without a gap).
        self._batches: dict[str, tuple[str, int, int]] = {}
        #: Batches stored but not committed yet (``TaskDB.add_rows(defer=True)``), as
        #: (uuid, link, seq): they count as committed once :meth:`flush` commits them.
        self._stored: list[tuple[str, object, object]] = []
        #: Ids purged by name: their records arriving later are dropped (``_purge``).
        self._purged = Tombstones()

    @property
    def unflushed(self) -> bool:
        """Whether batches wait for :meth:`flush` (the hub calls it soon after)."""
        return self.db.uncommitted or bool(self._stored)

    def flush(self) -> None:
        """Commit the batches stored since the last commit; only now do engines' pings
        learn of them (``committed``), so an engine drops no record the hub could lose."""
        self.db.commit()
        stored, self._stored = self._stored, []
        for uuid, link, seq in stored:
            self._confirm(uuid, link, seq)

    def committed(self, engine_uuid: str, link: object) -> list[int] | None:
        """``[first, last]``: the batches of ``link`` this hub committed, none missing
        between (what an engine's ping is answered with), or None."""
        known = self._batches.get(engine_uuid)
        if known is None or known[0] != link:
            return None
        return [known[1], known[2]]

    def answer(self, request: Message) -> Reply | None:
        match request.msg_type:
            case "record_request":
                return self._store(request)
            case "result_request":
                self.flush()  # what a client is shown is committed: it outlives this hub
                return self._results(request)
            case "db_request":
                self.flush()
                return self._query(request)
            case "resubmitted_request":
                pairs = request.content.get("pairs")
                if not isinstance(pairs, list) or not all(
                    isinstance(p, list) and len(p) == 2 and all(isinstance(i, str) for i in p)
                    for p in pairs
                ):
                    raise MalformedMessage("pairs must be a list of [old, new] msg_ids")
                self.db.mark_resubmitted([p[0] for p in pairs], [p[1] for p in pairs])
                return Reply({"status": "ok"})
            case "purge_request":
                return self._purge(PurgeRequest.of(request.content))
            case "history_request":
                self.flush()
                return Reply({"status": "ok", "history": self.db.history()})
            case "queue_request":
                verbose = request.content.get("verbose", False)
                if not isinstance(verbose, bool):
                    raise MalformedMessage("verbose must be true or false")
                self.flush()
                tasks = self.db.engine_tasks(finished_ids=verbose)
                engines = {
                    str(engine): {"pending": pending, "completed": finished}
                    for engine, (pending, finished) in tasks.items()
                }
                return Reply({"status": "ok", "engines": engines})
        raise MalformedMessage(f"not a record request: {request.msg_type}")

    def engine_lost(self, engine_uuid: str, reason: str) -> None:
        """The tasks still running on a lost engine fail with ``reason`` (``EngineError``,
        as their clients were told); a result it still sends later replaces that."""
        self.db.fail_pending(reason, utc_now_iso(), engine_uuid=engine_uuid, ename="EngineError")

    def _store(self, request: Message) -> Reply | None:
        content = request.content
        uuid, engine_id, rows = content.get("uuid"), content.get("id"), content.get("rows")
        if not isinstance(uuid, str) or not isinstance(engine_id, int):
            raise MalformedMessage("a record batch needs the engine's uuid and id")
        if not isinstance(rows, list):
            raise MalformedMessage("rows must be a list")
        frames = split_frames(request.buffers, content.get("sizes"))
        full, tasks, results = rows_of(rows, frames, uuid, engine_id, utc_now_iso())
        if self._purged:  # records of tasks purged before they arrived stay purged
            full = self._purged.drop_from(full, task_id=True)
            tasks = self._purged.drop_from(tasks, task_id=True)
            results = self._purged.drop_from(results, task_id=False)
        # A batch that asks for no reply is committed with the others that come within
        # COMMIT_WINDOW (the hub calls flush); one that asks (sync records, large buffers)
        # is committed before its reply, and the deferred ones with it.
        defer = content.get("ack", True) is False
        try:
            self.db.add_rows(full, tasks, results, defer=defer)
        except (sqlite3.Error, ValueError, OverflowError) as exc:
            # A value SQLite cannot bind (a lone surrogate, a huge integer): nothing of
            # this batch was stored, and the hub serves on.
            raise MalformedMessage(f"the batch cannot be stored: {exc}") from None
        link, seq = content.get("link"), content.get("seq")
        if defer:
            self._stored.append((uuid, link, seq))
            # Small batches are confirmed by the answer to the engine's next ping: a
            # reply per batch was a third of the hub's CPU for records.
            return None
        self.flush()
        self._confirm(uuid, link, seq)
        return Reply({"status": "ok"})

    def _confirm(self, uuid: str, link: object, seq: object) -> None:
        """Batch ``seq`` of ``link`` is committed: what the engine's pings are told."""
        if isinstance(link, str) and isinstance(seq, int):
            known = self._batches.get(uuid)
            if known is not None and known[0] == link and seq == known[2] + 1:
                self._batches[uuid] = (link, known[1], seq)
            else:  # a new link (a replacement engine, this hub restored), or a gap
                self._batches[uuid] = (link, seq, seq)

    def _purge(self, request: PurgeRequest) -> Reply:
        """Forget what ``request`` names; a named task still pending stops it all (as
        ipyparallel's hub), so a client never loses a record it may still wait for."""
        self.flush()  # the deferred batches too: what was stored before the purge goes
        named = [] if request.msg_ids == "all" else request.msg_ids
        running = self.db.pending_of(named)
        if running:
            return Reply({"status": "ok", "purged": 0, "running": running})
        count = self.db.purge(named, request.engine_ids, everything=request.msg_ids == "all")
        self._purged.add(named)  # their records may be on their way (``_purge``)
        return Reply({"status": "ok", "purged": count, "running": []})

    def _results(self, request: Message) -> Reply:
        msg_ids = request.content.get("msg_ids")
        if not isinstance(msg_ids, list) or not all(isinstance(m, str) for m in msg_ids):
            raise MalformedMessage("msg_ids must be a list of strings")
        keys = request.content.get("keys") or [
            "msg_id", "status", "engine_id", "engine_uuid", "submitted", "started",
            "completed", "resubmitted", "result_content", "result_metadata", "result_buffers",
        ]  # fmt: skip
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise MalformedMessage("keys must be null or a list of strings")
        try:
            found = self.db.find(msg_ids, keys) if msg_ids else {}
        except QueryError as exc:
            raise MalformedMessage(str(exc)) from None
        # Each record says which of the asked ids it answers (a task id, or its msg_id).
        rows = [{**row, "asked": asked} for asked, row in found.items()]
        records, buffers = _with_frames(rows)
        unknown = [m for m in msg_ids if m not in found]
        return Reply({"status": "ok", "records": records, "unknown": unknown}, {}, buffers)

    def _query(self, request: Message) -> Reply:
        query, keys = request.content.get("query", {}), request.content.get("keys")
        if keys is not None and (
            not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)
        ):
            raise MalformedMessage("keys must be null or a list of strings")
        try:
            rows = self.db.query(query, keys)
        except QueryError as exc:
            raise MalformedMessage(str(exc)) from None
        records, buffers = _with_frames(rows)
        return Reply({"status": "ok", "records": records}, {}, buffers)


#: Frames per row kind: a task's header, metadata, content and packed buffers; a
#: result's content, metadata and packed buffers; both for ``full``.
_FRAMES = {"full": 7, "task": 4, "result": 3}
#: Which of them are JSON text (the others: packed buffers).
_JSON_FRAMES = {"full": (0, 1, 2, 4, 5), "task": (0, 1, 2), "result": (0, 1)}
#: The types a row's fields may have.
_TEXT_OR_NULL = frozenset({str, type(None)})
#: Packed buffers up to this size are bound as a ``bytearray`` copy (below).
_SMALL_BLOB = 1 << 16


def _blob(frame: bytes | memoryview) -> bytes | memoryview | bytearray:
    """A packed-buffers frame as SQLite binds it fastest. Python's sqlite3 binds only
    ``bytearray`` among the buffer types without trying adapters first (``__adapt__``,
    ``__conform__``: ~1 us a value); a small copy costs less than that, a large one more
    (SQLite copies the value anyway)."""
    return bytearray(frame) if len(frame) <= _SMALL_BLOB else frame


def split_frames(buffers: Sequence[bytes | memoryview], sizes: object) -> list[memoryview]:
    """The one buffer of a record batch cut into its frames (``sizes``: their lengths),
    as views: no copy, and one frame to receive instead of seven per task."""
    if len(buffers) != 1 or not isinstance(sizes, list):
        raise MalformedMessage("a record batch is one buffer and the sizes of its frames")
    view = memoryview(buffers[0]).cast("B")
    if not all(isinstance(n, int) and n >= 0 for n in sizes) or sum(sizes) != view.nbytes:
        raise MalformedMessage(f"the frame sizes do not add up to the {view.nbytes} bytes sent")
    frames, offset = [], 0
    for size in sizes:
        frames.append(view[offset : offset + size])
        offset += size
    return frames


def rows_of(
    rows: list[Any],
    frames: Sequence[bytes | memoryview],
    engine_uuid: str,
    engine_id: int,
    received: str,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """An engine's batch as :meth:`TaskDB.add_rows` binds it: ``(full, tasks, results)``.

    Each row is ``[kind, msg_id, task_id, submitted, client_uuid, started, completed,
    status]`` (``kind``: ``full``, ``task`` or ``result``; fields a kind lacks are null)
    and takes its frames in order (:data:`_FRAMES`): the JSON columns' text, stored as
    is, and the buffers packed as the database keeps them (``_db.pack_buffers``), so
    nothing is decoded or encoded again here. :class:`MalformedMessage` if it is wrong."""
    full: list[tuple[Any, ...]] = []
    tasks: list[tuple[Any, ...]] = []
    results: list[tuple[Any, ...]] = []
    offset = 0
    for row in rows:
        # Per row: the checks run in C (types, a set's issuperset over the row's types).
        if type(row) is not list or len(row) != 8 or type(row[1]) is not str:
            raise MalformedMessage("a record row is [kind, msg_id, 6 fields]")
        kind, msg_id, task_id, submitted, client_uuid, started, completed, status = row
        count = _FRAMES.get(kind) if type(kind) is str else None
        if count is None or not _TEXT_OR_NULL.issuperset(map(type, row)):
            raise MalformedMessage(f"a record row of kind {kind!r} or with non-text fields")
        got = frames[offset : offset + count]
        offset += count
        if len(got) != count:
            raise MalformedMessage(f"the rows need more than the {len(frames)} frames sent")
        try:  # JSON columns are TEXT: what a query compares with and reads back
            texts = [str(got[i], "utf-8") for i in _JSON_FRAMES[kind]]
        except UnicodeDecodeError:
            raise MalformedMessage("a JSON column is not UTF-8") from None
        if kind == "result":
            results.append((msg_id, engine_uuid, engine_id, completed, received,
                            status or "ok", texts[0], texts[1], _blob(got[2])))  # fmt: skip
            continue
        task = (msg_id, task_id, texts[0], texts[1], texts[2], _blob(got[3]), submitted,
                client_uuid, engine_uuid, engine_id, started, received)  # fmt: skip
        if kind == "task":
            tasks.append(task)
        else:
            full.append((*task, completed, status or "ok", texts[3], texts[4], _blob(got[6])))
    if offset != len(frames):
        raise MalformedMessage(f"the rows take {offset} frames, {len(frames)} came")
    return full, tasks, results


def _with_frames(rows: Sequence[dict[str, Any]]) -> tuple[list[JSONDict], list[bytes]]:
    """Records with their buffer lists replaced by counts, and the frames in order."""
    frames: list[bytes] = []
    out: list[JSONDict] = []
    for row in rows:
        record = dict(row)
        for key in ("buffers", "result_buffers"):
            if key in record:
                frames.extend(record[key])
                record[key] = len(record[key])
        out.append(record)
    return out, frames
