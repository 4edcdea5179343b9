"""The controller's task records: every task an engine started and every result, in SQLite.

Theory of operation
-------------------
Engines send the hub a copy of each task's request when it starts and of its reply when
it is answered (``parallel.engine._recorder``); the hub stores them here, one row per
msg_id, and answers clients' ``result_request`` / ``db_request`` from here. A record is
stored by msg_id: the same record sent twice (an engine resends what the hub had not
acknowledged when it died) replaces itself, so nothing is counted twice.

By default the database is a file next to the cluster file (``loom-cluster-ID.db``) in
WAL mode with ``synchronous=NORMAL``: a committed batch survives the controller's
SIGKILL (the WAL is in the file system), not a power cut. ``durability="sync"`` uses
``synchronous=FULL`` (an fsync per batch), and engines then wait for the commit before
replying. ``--no-db`` keeps the same tables in memory (``:memory:``): the same queries
work, nothing survives the controller.

Clients may purge records (``purge_request``, ipyparallel's ``purge_hub_results``):
:meth:`TaskDB.purge` deletes the rows, in one transaction; SQLite reuses their pages, the
file does not shrink. :meth:`TaskDB.history` lists every task once, by submission time.

Queries use a subset of ipyparallel's mongo-style syntax (``$in``, ``$nin``, ``$eq``,
``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``) on the columns in :data:`COLUMNS`; the
translation to SQL is pure (:func:`where_clause`) and takes names from that list only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "COLUMNS",
    "FULL_COLUMNS",
    "INFLIGHT_REASON",
    "RESULT_COLUMNS",
    "SQL_CHUNK",
    "TASK_COLUMNS",
    "QueryError",
    "SetupRow",
    "TaskDB",
    "pack_buffers",
    "unpack_buffers",
    "where_clause",
]

#: The reason a task that was running when the controller died is failed with.
INFLIGHT_REASON = "controller restarted while the task ran; resubmit with rc.resubmit"

#: Record keys (ipyparallel's names where it has one) -> whether they hold JSON.
COLUMNS: dict[str, bool] = {
    "msg_id": False,
    #: A load-balanced task's id (its ``AsyncResult.msg_ids``), in each attempt's metadata.
    "task_id": False,
    "header": True,
    "metadata": True,
    "content": True,
    "buffers": False,
    "submitted": False,
    "client_uuid": False,
    "engine_uuid": False,
    "engine_id": False,
    "started": False,
    "completed": False,
    "received": False,
    "resubmitted": False,
    "status": False,
    "result_content": True,
    "result_metadata": True,
    "result_buffers": False,
}
_BLOBS = {"buffers", "result_buffers"}
#: Ids bound per statement where a list of them is (a purge, a pending check): SQLite
#: takes at most 32,766 parameters in one, and a purge may name more tasks than that.
SQL_CHUNK = 500
#: Columns stored as JSON text (an engine sends them encoded: ``record["_json"]``).
JSON_COLUMNS = frozenset(key for key, is_json in COLUMNS.items() if is_json)
_OPERATORS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    msg_id TEXT PRIMARY KEY, task_id TEXT,
    header TEXT, metadata TEXT, content TEXT, buffers BLOB,
    submitted TEXT, client_uuid TEXT, engine_uuid TEXT, engine_id INTEGER,
    started TEXT, completed TEXT, received TEXT, resubmitted TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    result_content TEXT, result_metadata TEXT, result_buffers BLOB
);
CREATE INDEX IF NOT EXISTS tasks_pending ON tasks (status) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS tasks_task_id ON tasks (task_id) WHERE task_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS setup (
    position INTEGER PRIMARY KEY, msg_type TEXT NOT NULL, content TEXT NOT NULL,
    buffers BLOB, targets TEXT, summary TEXT NOT NULL
);
"""

#: One recorded setup item as stored: (msg_type, content, buffers, targets, summary).
SetupRow = tuple[str, dict[str, Any], list[bytes], list[int] | None, str]


#: The columns of :meth:`TaskDB.add_rows`' rows, in order.
TASK_COLUMNS = (
    "msg_id", "task_id", "header", "metadata", "content", "buffers", "submitted",
    "client_uuid", "engine_uuid", "engine_id", "started", "received",
)  # fmt: skip
RESULT_COLUMNS = (
    "msg_id", "engine_uuid", "engine_id", "completed", "received", "status",
    "result_content", "result_metadata", "result_buffers",
)  # fmt: skip
FULL_COLUMNS = (*TASK_COLUMNS, "completed", "status", *RESULT_COLUMNS[6:])

# A result that arrived first (a resend) keeps its status and result columns.
_TASK_SQL = """INSERT INTO tasks (msg_id, task_id, header, metadata, content, buffers,
        submitted, client_uuid, engine_uuid, engine_id, started, received)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (msg_id) DO UPDATE SET task_id=excluded.task_id, header=excluded.header,
        metadata=excluded.metadata, content=excluded.content, buffers=excluded.buffers,
        submitted=excluded.submitted, client_uuid=excluded.client_uuid,
        engine_uuid=excluded.engine_uuid, engine_id=excluded.engine_id,
        started=excluded.started"""
_RESULT_SQL = """INSERT INTO tasks (msg_id, engine_uuid, engine_id, completed, received,
        status, result_content, result_metadata, result_buffers)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (msg_id) DO UPDATE SET completed=excluded.completed,
        status=excluded.status, result_content=excluded.result_content,
        result_metadata=excluded.result_metadata, result_buffers=excluded.result_buffers"""
_FULL_SQL = """INSERT OR REPLACE INTO tasks (msg_id, task_id, header, metadata, content,
        buffers, submitted, client_uuid, engine_uuid, engine_id, started, received,
        completed, status, result_content, result_metadata, result_buffers)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def _task_row(
    engine_uuid: str,
    engine_id: int,
    record: Mapping[str, Any],
    buffers: Sequence[bytes | memoryview],
    received: str,
) -> tuple[Any, ...]:
    texts: Mapping[str, str] = record.get("_json") or {}
    header = record.get("header") or {}
    metadata = dict(record.get("metadata") or {})
    if record.get("buffers_omitted"):  # too large to copy (parallel.engine._recorder)
        metadata["loom_buffers_omitted"] = record["buffers_omitted"]
    task_id = record.get("task_id", metadata.get("task_id"))
    submitted = record.get("submitted", header.get("date"))
    client_uuid = record.get("client_uuid", header.get("session"))
    return (
        str(record["msg_id"]),
        task_id if isinstance(task_id, str) else None,
        texts.get("header") or json.dumps(header),
        texts.get("metadata") or json.dumps(metadata),
        texts.get("content") or json.dumps(record.get("content") or {}),
        pack_buffers(buffers),
        str(submitted) if submitted else None,
        str(client_uuid) if client_uuid else None,
        engine_uuid,
        engine_id,
        record.get("started"),
        received,
    )


def _result_row(
    engine_uuid: str,
    engine_id: int,
    record: Mapping[str, Any],
    buffers: Sequence[bytes | memoryview],
    received: str,
) -> tuple[Any, ...]:
    texts: Mapping[str, str] = record.get("_json") or {}
    content = record.get("result_content") or {}
    result_metadata = dict(record.get("result_metadata") or {})
    if record.get("result_omitted"):
        result_metadata["loom_result_omitted"] = record["result_omitted"]
    return (
        str(record["msg_id"]),
        engine_uuid,
        engine_id,
        record.get("completed"),
        received,
        str(record.get("status", content.get("status", "ok"))),
        texts.get("result_content") or json.dumps(content),
        texts.get("result_metadata") or json.dumps(result_metadata),
        pack_buffers(buffers),
    )


class QueryError(ValueError):
    """A query the database cannot answer (an unknown key or operator)."""


def pack_buffers(buffers: Sequence[bytes | memoryview]) -> bytes:
    """Buffers as one blob: a count, the lengths, then the bytes."""
    views = [memoryview(b).cast("B") for b in buffers]
    head = struct.pack(f"<I{len(views)}Q", len(views), *(v.nbytes for v in views))
    return b"".join([head, *views])


def unpack_buffers(blob: bytes | None) -> list[bytes]:
    if not blob:
        return []
    (count,) = struct.unpack_from("<I", blob)
    lengths = struct.unpack_from(f"<{count}Q", blob, 4)
    out, offset = [], 4 + 8 * count
    for length in lengths:
        out.append(bytes(blob[offset : offset + length]))
        offset += length
    return out


def where_clause(query: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """``(sql, parameters)`` for a mongo-style query; :class:`QueryError` if it is wrong."""
    if not isinstance(query, Mapping):
        raise QueryError("a query must be a dict, e.g. {'completed': {'$ne': None}}")
    parts: list[str] = []
    params: list[Any] = []
    for key, test in query.items():
        if key not in COLUMNS or key in _BLOBS:
            raise QueryError(f"cannot query on {key!r}; use one of {', '.join(_queryable())}")
        tests = test if isinstance(test, Mapping) else {"$eq": test}
        for op, value in tests.items():
            if op in ("$in", "$nin"):
                if not isinstance(value, list | tuple):
                    raise QueryError(f"{op} needs a list, got {value!r}")
                marks = ", ".join("?" * len(value))
                parts.append(f"{key} {'IN' if op == '$in' else 'NOT IN'} ({marks})")
                params.extend(value)
            elif op in _OPERATORS:
                if value is None and op in ("$eq", "$ne"):
                    parts.append(f"{key} IS {'NOT ' if op == '$ne' else ''}NULL")
                else:
                    parts.append(f"{key} {_OPERATORS[op]} ?")
                    params.append(value)
            else:
                known = ", ".join(["$in", "$nin", *_OPERATORS])
                raise QueryError(f"unknown operator {op!r}; use one of {known}")
    return (" AND ".join(parts) or "1"), params


def _queryable() -> list[str]:
    return [key for key in COLUMNS if key not in _BLOBS]


class TaskDB:
    """The records of one cluster: ``path=None`` keeps them in memory only."""

    def __init__(self, path: Path | None, *, sync: bool = False) -> None:
        self.path = path
        if path is not None:
            # Created owner-only before SQLite opens it (which would make it 0644 under the
            # usual umask): it holds every task's arguments and results, and SQLite gives
            # its -wal and -shm files the database file's mode.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        self._db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if sync else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        #: Whether rows stored with ``add_rows(defer=True)`` wait for :meth:`commit`.
        self.uncommitted = False

    def close(self) -> None:
        self.commit()
        self._db.close()

    # -- records ------------------------------------------------------------------

    def add_records(
        self,
        engine_uuid: str,
        engine_id: int,
        records: Iterable[tuple[Mapping[str, Any], Sequence[bytes | memoryview]]],
        received: str,
    ) -> None:
        """Store records given as dicts (``kind``, ``msg_id`` and the columns), in one
        transaction. A task whose start and reply records are both there is one row."""
        tasks: dict[str, tuple[Any, ...]] = {}
        results: dict[str, tuple[Any, ...]] = {}
        for record, buffers in records:
            msg_id = str(record["msg_id"])
            if record.get("kind") == "task":
                tasks[msg_id] = _task_row(engine_uuid, engine_id, record, buffers, received)
            elif record.get("kind") == "result":
                results[msg_id] = _result_row(engine_uuid, engine_id, record, buffers, received)
        both = tasks.keys() & results.keys()
        # The result's completed, status and result columns after the task's.
        full = [tasks[m] + results[m][3:4] + results[m][5:] for m in both]
        self.add_rows(
            full,
            [v for m, v in tasks.items() if m not in both],
            [v for m, v in results.items() if m not in both],
        )

    def add_rows(
        self,
        full: Sequence[tuple[Any, ...]],
        tasks: Sequence[tuple[Any, ...]],
        results: Sequence[tuple[Any, ...]],
        *,
        defer: bool = False,
    ) -> None:
        """Store rows as they are bound (the hub builds them from an engine's batch with
        no per-column work): ``full`` rows are a task and its result (:data:`FULL_COLUMNS`),
        ``tasks`` a started task (:data:`TASK_COLUMNS`), ``results`` a result alone
        (:data:`RESULT_COLUMNS`). One transaction; :class:`sqlite3.Error` if a value
        cannot be stored (nothing is then).

        ``defer``: into the transaction left open for later batches, committed by
        :meth:`commit` (or by the next write that is not deferred): a commit per batch
        was half of what a small batch cost the hub (engines that reply a task at a time
        send batches of one). Until then the rows are visible to this connection's
        queries, not durable."""
        if not defer:
            self.commit()
            with self._transaction():
                self._insert(full, tasks, results)
            return
        if not self.uncommitted:
            self._db.execute("BEGIN")
            self.uncommitted = True
        self._db.execute("SAVEPOINT batch")  # a batch that fails leaves the others
        try:
            self._insert(full, tasks, results)
        except BaseException:
            self._db.execute("ROLLBACK TO batch")
            raise
        finally:
            self._db.execute("RELEASE batch")

    def commit(self) -> None:
        """Commit the rows stored with ``defer`` (nothing if there are none)."""
        if self.uncommitted:
            self.uncommitted = False
            self._db.execute("COMMIT")

    def _insert(
        self,
        full: Sequence[tuple[Any, ...]],
        tasks: Sequence[tuple[Any, ...]],
        results: Sequence[tuple[Any, ...]],
    ) -> None:
        if full:
            self._db.executemany(_FULL_SQL, full)
        if tasks:
            self._db.executemany(_TASK_SQL, tasks)
        if results:
            self._db.executemany(_RESULT_SQL, results)

    def fail_pending(
        self,
        reason: str,
        now: str,
        *,
        engine_uuid: str | None = None,
        ename: str = "ControllerRestarted",
    ) -> int:
        """Tasks without a result fail with ``reason``: all of them (running when the
        controller died), or those of one engine (it was lost)."""
        content = json.dumps({"status": "error", "ename": ename, "evalue": reason, "traceback": []})
        where = "status='pending'" + (" AND engine_uuid=?" if engine_uuid is not None else "")
        params: tuple[str, ...] = (now, content)
        if engine_uuid is not None:
            params += (engine_uuid,)
        with self._transaction():
            cursor = self._db.execute(
                f"UPDATE tasks SET status='failed', completed=?, result_content=? WHERE {where}",
                params,
            )
        return cursor.rowcount

    def mark_resubmitted(self, msg_ids: Sequence[str], new_ids: Sequence[str]) -> None:
        with self._transaction():
            pairs = list(zip(new_ids, msg_ids, strict=True))
            self._db.executemany("UPDATE tasks SET resubmitted=? WHERE msg_id=?", pairs)

    def query(self, query: Mapping[str, Any], keys: Sequence[str] | None) -> list[dict[str, Any]]:
        """Records matching ``query``, with ``keys`` (default: every key but the buffers)."""
        wanted = list(keys) if keys else [k for k in COLUMNS if k not in _BLOBS]
        for key in wanted:
            if key not in COLUMNS:
                raise QueryError(f"unknown key {key!r}; the keys are {', '.join(COLUMNS)}")
        if "msg_id" not in wanted:
            wanted.insert(0, "msg_id")
        where, params = where_clause(query)
        sql = f"SELECT {', '.join(wanted)} FROM tasks WHERE {where} ORDER BY rowid"
        out = []
        for row in self._db.execute(sql, params):
            record: dict[str, Any] = {}
            for key, value in zip(wanted, row, strict=True):
                if key in _BLOBS:
                    record[key] = unpack_buffers(value)
                elif COLUMNS[key] and value is not None:
                    try:
                        record[key] = json.loads(value)
                    except ValueError:  # an engine sent text that is not JSON: say nothing
                        record[key] = None
                else:
                    record[key] = value
            out.append(record)
        return out

    def find(self, ids: Sequence[str], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The record of each of ``ids``: by msg_id, or else by load-balanced task id
        (its attempt that succeeded, or else the latest to finish)."""
        found = {r["msg_id"]: r for r in self.query({"msg_id": {"$in": list(ids)}}, keys)}
        rest = [i for i in ids if i not in found]
        if rest:
            wanted = [*keys, "task_id", "status", "completed"]
            rows = self.query({"task_id": {"$in": rest}}, list(dict.fromkeys(wanted)))
            rows.sort(key=lambda r: (r["status"] == "ok", r["completed"] or ""))
            for row in rows:  # the best attempt comes last and wins
                found[row["task_id"]] = row
        return found

    def pending_of(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` (msg_ids or load-balanced task ids) that name a record still
        pending (started, no result yet), in the order given."""
        found: set[str] = set()
        for chunk in _chunks(ids):
            marks = ", ".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT msg_id, task_id FROM tasks WHERE status='pending'"
                f" AND (msg_id IN ({marks}) OR task_id IN ({marks}))",
                [*chunk, *chunk],
            )
            found.update(name for row in rows for name in row if name is not None)
        return [i for i in ids if i in found]

    def purge(
        self,
        ids: Sequence[str] = (),
        engine_ids: Sequence[int] = (),
        *,
        everything: bool = False,
    ) -> int:
        """Forget records, in one transaction; how many. Every record of ``ids`` (msg_ids
        or load-balanced task ids: all attempts), whatever its status (the hub refuses to
        purge a pending one by name first: :meth:`pending_of`), and the finished records
        (status not ``pending``) of ``engine_ids``, or of every engine with
        ``everything``: a task still running keeps its record, its result is to come."""
        count = 0
        with self._transaction():
            for chunk in _chunks(ids):
                marks = ", ".join("?" * len(chunk))
                count += self._db.execute(
                    f"DELETE FROM tasks WHERE msg_id IN ({marks}) OR task_id IN ({marks})",
                    [*chunk, *chunk],
                ).rowcount
            finished = "status != 'pending'"
            if everything:
                count += self._db.execute(f"DELETE FROM tasks WHERE {finished}").rowcount
            for engines in _chunks(engine_ids):
                marks = ", ".join("?" * len(engines))
                count += self._db.execute(
                    f"DELETE FROM tasks WHERE {finished} AND engine_id IN ({marks})", engines
                ).rowcount
        return count

    def engine_tasks(self, *, finished_ids: bool) -> dict[int, tuple[list[str], list[str] | int]]:
        """Per engine id: the msg_ids of its pending records (started, no result yet) and
        its finished records (their msg_ids with ``finished_ids``, else a count): what
        ``queue_status`` shows. Records without an engine id are left out."""
        out: dict[int, tuple[list[str], list[str] | int]] = {}

        def entry(engine: int) -> tuple[list[str], list[str] | int]:
            return out.setdefault(engine, ([], [] if finished_ids else 0))

        pending = self._db.execute(
            "SELECT engine_id, msg_id FROM tasks WHERE status='pending' AND engine_id IS NOT NULL"
        )
        for engine, msg_id in pending:
            entry(engine)[0].append(msg_id)
        if finished_ids:
            rows = self._db.execute(
                "SELECT engine_id, msg_id FROM tasks WHERE status != 'pending'"
                " AND engine_id IS NOT NULL ORDER BY rowid"
            )
            for engine, msg_id in rows:
                entry(engine)[1].append(msg_id)  # type: ignore[union-attr]
        else:
            counts = self._db.execute(
                "SELECT engine_id, COUNT(*) FROM tasks WHERE status != 'pending'"
                " AND engine_id IS NOT NULL GROUP BY engine_id"
            )
            for engine, count in counts:
                out[engine] = (entry(engine)[0], count)
        return out

    def history(self) -> list[str]:
        """Every task recorded, once, by submission time (ipyparallel's ``hub_history``):
        a load-balanced task by its task id (what its ``AsyncResult`` and ``get_result``
        know it by), at its first attempt, and any other by its msg_id. A record without
        a submission time (its result came alone) counts from when the hub received it."""
        rows = self._db.execute(
            "SELECT COALESCE(task_id, msg_id) AS id FROM tasks GROUP BY id"
            " ORDER BY MIN(COALESCE(submitted, received)), MIN(rowid)"
        )
        return [row[0] for row in rows]

    # -- recorded setup (the hub's ``setup_request``; replayed after a restore too) ---

    def save_setup(self, rows: Sequence[SetupRow]) -> None:
        """Replace the recorded setup with ``rows``, in order (one transaction)."""
        with self._transaction():
            self._db.execute("DELETE FROM setup")
            self._db.executemany(
                "INSERT INTO setup (position, msg_type, content, buffers, targets, summary)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (i, kind, json.dumps(content), pack_buffers(buffers), json.dumps(targets), what)
                    for i, (kind, content, buffers, targets, what) in enumerate(rows)
                ],
            )

    def load_setup(self) -> list[SetupRow]:
        """The recorded setup, in order (empty if none was)."""
        rows = self._db.execute(
            "SELECT msg_type, content, buffers, targets, summary FROM setup ORDER BY position"
        )
        return [
            (kind, json.loads(content), unpack_buffers(buffers), json.loads(targets), what)
            for kind, content, buffers, targets, what in rows
        ]

    def _transaction(self) -> _Transaction:
        self.commit()  # deferred rows first: one transaction at a time
        return _Transaction(self._db)


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    """``values`` in slices of :data:`SQL_CHUNK` (none for none)."""
    return [values[i : i + SQL_CHUNK] for i in range(0, len(values), SQL_CHUNK)]


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")
