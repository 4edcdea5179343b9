"""The hub's record requests: engines store task records, clients read them back.

=====================  ==================================================================
``record_request``     engine: ``{"uuid", "id", "link", "seq", "ack", "records":
                       [{"kind": "task"|"result", "msg_id", ..., "json": [column names],
                       "nbuf"}]}``; per record, its JSON columns' encoded text, then its
                       buffers, as frames in order. ``link`` names the engine's hub link,
                       ``seq`` numbers its batches (1, 2, ...)
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
=====================  ==================================================================

Nothing here blocks for long: a batch is one SQLite transaction (WAL), on the hub's loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kernel.protocol import JSONDict, MalformedMessage, Message, Reply, utc_now_iso

from ._db import JSON_COLUMNS, QueryError, TaskDB

__all__ = ["Records"]


class Records:
    """Answers the record requests from one :class:`TaskDB`."""

    def __init__(self, db: TaskDB, durability: str = "async") -> None:
        self.db = db
        #: What engines are told at registration: ``async`` or ``sync``.
        self.durability = durability
        #: Engine uuid -> (its link, first and last batch committed without a gap).
        self._batches: dict[str, tuple[str, int, int]] = {}

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
                return self._results(request)
            case "db_request":
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
        raise MalformedMessage(f"not a record request: {request.msg_type}")

    def engine_lost(self, engine_uuid: str, reason: str) -> None:
        """The tasks still running on a lost engine fail with ``reason`` (``EngineError``,
        as their clients were told); a result it still sends later replaces that."""
        self.db.fail_pending(reason, utc_now_iso(), engine_uuid=engine_uuid, ename="EngineError")

    def _store(self, request: Message) -> Reply | None:
        content = request.content
        uuid, engine_id, records = content.get("uuid"), content.get("id"), content.get("records")
        if not isinstance(uuid, str) or not isinstance(engine_id, int):
            raise MalformedMessage("a record batch needs the engine's uuid and id")
        if not isinstance(records, list):
            raise MalformedMessage("records must be a list")
        batch = []
        offset = 0
        buffers = request.buffers
        for record in records:
            nbuf = record.get("nbuf", 0) if isinstance(record, dict) else -1
            if not isinstance(nbuf, int) or nbuf < 0 or not isinstance(record.get("msg_id"), str):
                raise MalformedMessage("each record needs a msg_id and its buffer count")
            names = record.get("json", [])
            if not isinstance(names, list) or not set(names) <= JSON_COLUMNS:
                raise MalformedMessage(f"unknown JSON columns {names!r}")
            frames = buffers[offset : offset + len(names)]
            try:  # the JSON columns' text, stored as is (TaskDB.query reads it back)
                texts = {n: bytes(f).decode() for n, f in zip(names, frames, strict=False)}
            except UnicodeDecodeError:
                raise MalformedMessage("a JSON column is not UTF-8") from None
            offset += len(names)
            batch.append(({**record, "_json": texts}, buffers[offset : offset + nbuf]))
            offset += nbuf
        if offset != len(buffers):
            raise MalformedMessage(f"the records count {offset} buffers, {len(buffers)} came")
        self.db.add_records(uuid, engine_id, batch, utc_now_iso())
        link, seq = content.get("link"), content.get("seq")
        if isinstance(link, str) and isinstance(seq, int):
            known = self._batches.get(uuid)
            if known is not None and known[0] == link and seq == known[2] + 1:
                self._batches[uuid] = (link, known[1], seq)
            else:  # a new link (a replacement engine, this hub restored), or a gap
                self._batches[uuid] = (link, seq, seq)
        # Small batches are confirmed by the answer to the engine's next ping: a reply
        # per batch was a third of the hub's CPU for records.
        if content.get("ack", True) is False:
            return None
        return Reply({"status": "ok"})

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
