"""The kernel's input history: one SQLite file shared by every Loom kernel of a user.

This is the storage behind ``history_request`` (messaging spec, section "History"): the three
``hist_access_type`` values map to :meth:`HistoryStore.tail`, :meth:`HistoryStore.range` and
:meth:`HistoryStore.search`, and :meth:`HistoryStore.to_reply` builds the reply's ``history``
list. Pure stdlib; no zmq, no asyncio.

Theory of operation
-------------------
Each store opened on a file allocates a new *session* (a row of the ``sessions`` table) and
records every executed cell of that session as a row ``(session, line)`` of ``history``.
Several kernels may share the file at once, so:

- the file is in WAL journal mode: readers never block the writer and vice versa;
- every connection waits up to ``busy_timeout`` seconds for the single write lock instead of
  failing at once with "database is locked";
- every write is one short transaction: session allocation (and schema creation on a fresh file)
  is a single ``BEGIN IMMEDIATE`` transaction, so two kernels starting together never get the same
  session number, and a stored cell is a single-statement transaction;
- ``synchronous=NORMAL`` makes a commit an append to the WAL with no fsync. A commit survives the
  kernel process dying; only an OS crash can lose the last few cells. That is the right trade for
  history, and it keeps :meth:`HistoryStore.store` in the tens of microseconds.

History must never take the kernel down. If the file cannot be opened (corrupt, unwritable, a
directory, written by an incompatible schema) or a later write fails, the store falls back to an
in-memory database for the rest of the session and says why in :attr:`HistoryStore.warning`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

__all__ = ["HistoryEntry", "HistoryStore", "default_history_path"]

DEFAULT_BUSY_TIMEOUT = 10.0
"""Seconds a connection waits for another kernel's write lock before giving up."""

_SCHEMA_VERSION = 1
_MEMORY = ":memory:"

_CREATE_SESSIONS = """
CREATE TABLE IF NOT EXISTS sessions (
    session INTEGER PRIMARY KEY AUTOINCREMENT,
    start TEXT NOT NULL,
    "end" TEXT NULL
)"""
_CREATE_HISTORY = """
CREATE TABLE IF NOT EXISTS history (
    session INTEGER NOT NULL,
    line INTEGER NOT NULL,
    source TEXT NOT NULL,
    source_raw TEXT NOT NULL,
    output TEXT NULL,
    PRIMARY KEY (session, line)
)"""
# Fails with "no such table/column" on a file that holds some other schema.
_CHECK_SCHEMA = (
    'SELECT session, start, "end" FROM sessions LIMIT 0',
    "SELECT session, line, source, source_raw, output FROM history LIMIT 0",
)
_SELECT_SESSION_ROWS = (
    "SELECT session, line, source, source_raw, output FROM history WHERE session = ?"
)
_INSERT = (
    "INSERT OR REPLACE INTO history (session, line, source, source_raw, output)"
    " VALUES (?, ?, ?, ?, ?)"
)


class HistoryEntry(NamedTuple):
    """One executed cell as returned by a query.

    ``source`` is the raw or the transformed source, as the query asked; ``output`` is ``None``
    unless the query asked for output (and then ``None`` if the cell had none).
    """

    session: int
    line: int
    source: str
    output: str | None


class _SchemaError(sqlite3.DatabaseError):
    """The file holds a history written by an incompatible version of Loom."""


def default_history_path() -> Path:
    """Where kernels keep history: ``$LOOM_HISTORY_FILE`` if set and non-empty, else
    ``<jupyter data dir>/loom/history.sqlite``. Nothing is created."""
    override = os.environ.get("LOOM_HISTORY_FILE")
    if override:
        return Path(override).expanduser()
    # Imported here so that importing this module stays cheap and dependency-free.
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "loom" / "history.sqlite"


def _now() -> str:
    return datetime.now(UTC).isoformat()


class HistoryStore:
    """The history of this kernel's session, in a database shared with other sessions.

    Attributes (read-only by convention):

    - ``session``: this store's session number, allocated when the store opens; positive.
    - ``path``: the file in use, or ``None`` when history lives in memory (asked for, or as a
      fallback).
    - ``warning``: ``None`` while the requested file is in use; otherwise a human-readable reason
      why history has fallen back to memory and will not persist.

    Queries return entries oldest first, ordered by ``(session, line)``. Sessions are numbered in
    the order kernels started, so with kernels running concurrently, :meth:`tail` and
    :meth:`search` interleave their cells by session number, as IPython does.

    Use a store from the thread that opened it (sqlite3's default ``check_same_thread``). After
    :meth:`close`, :meth:`store` raises :class:`ValueError` and queries raise
    :class:`sqlite3.ProgrammingError`.
    """

    session: int
    path: Path | None
    warning: str | None
    _conn: sqlite3.Connection

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        """Open (creating if needed) the history at ``path`` and start a new session.

        ``None`` or ``":memory:"`` keeps history in memory. The parent directory is created if
        missing. Never raises for an unusable file: see ``warning``.
        """
        self._busy_timeout = busy_timeout
        self._closed = False
        #: When true, :meth:`store` only buffers; the owner calls :meth:`flush` when the
        #: commit is off its critical path (the kernel: after a reply has gone out).
        self.defer_writes = False
        self._unwritten: list[tuple[int, int, str, str, str | None]] = []
        self.warning = None
        if path is None or os.fspath(path) == _MEMORY:
            self.path = None
            self._conn, self.session = _open(_MEMORY, busy_timeout)
            return
        self.path = Path(path)
        try:
            self._conn, self.session = _open(self.path, busy_timeout)
        except (OSError, sqlite3.Error) as exc:
            self._use_memory(f"cannot use history file {self.path}: {exc}", session=None)

    # -- writing ------------------------------------------------------------------------------

    def store(
        self, line: int, source: str, raw: str | None = None, output: str | None = None
    ) -> None:
        """Record executed cell ``line`` of this session; ``raw`` (what the user typed) defaults
        to ``source`` (what ran). Storing a line again replaces it.

        Never raises when the history file fails (locked beyond ``busy_timeout``, disk full,
        ...): history falls back to memory (keeping this session's cells when the file is still
        readable) and ``warning`` says why. Raises :class:`ValueError` if the store is closed.
        """
        if self._closed:
            raise ValueError("history store is closed")
        self._unwritten.append((self.session, line, source, source if raw is None else raw, output))
        if not self.defer_writes:
            self.flush()

    def flush(self) -> None:
        """Write the cells :meth:`store` buffered (with ``defer_writes``); every query flushes
        first, so readers never miss a stored cell."""
        while self._unwritten:
            row = self._unwritten.pop(0)
            try:
                # A single statement is its own write transaction: the shortest lock possible.
                self._conn.execute(_INSERT, row)
            except sqlite3.Error as exc:
                if self.path is None:
                    raise  # memory itself failed: nothing left to fall back on
                self._use_memory(f"writing history file {self.path} failed: {exc}", self.session)
                self._conn.execute(_INSERT, row)

    def close(self) -> None:
        """Record the session's end time and close the database. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
            self._conn.execute(
                'UPDATE sessions SET "end" = ? WHERE session = ?', (_now(), self.session)
            )
        except sqlite3.Error:
            pass  # an end time is not worth failing a kernel shutdown for
        finally:
            self._conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- queries (messaging spec, "History": hist_access_type) ---------------------------------

    def tail(
        self, n: int = 10, *, raw: bool = True, output: bool = False, include_latest: bool = True
    ) -> list[HistoryEntry]:
        """The last ``n`` cells across all sessions (``hist_access_type="tail"``).

        With ``include_latest=False`` the most recent cell is left out (IPython's ``get_tail``:
        it is usually the cell asking). ``n <= 0`` gives ``[]``.
        """
        if n <= 0:
            return []
        limit = n if include_latest else n + 1
        rows = self._select("ORDER BY session DESC, line DESC LIMIT ?", (limit,), raw, output)
        if not include_latest:
            rows = rows[1:]
        rows.reverse()
        return rows

    def range(
        self,
        session: int = 0,
        start: int = 1,
        stop: int | None = None,
        *,
        raw: bool = True,
        output: bool = False,
    ) -> list[HistoryEntry]:
        """Cells ``start <= line < stop`` of one session (``hist_access_type="range"``).

        ``session`` is absolute when positive and relative to this store's session otherwise,
        as in IPython: ``0`` is this session, ``-1`` the one numbered just before it, and so on.
        ``stop=None`` reads to the end. An unknown session gives ``[]``.
        """
        if session <= 0:
            session += self.session
        where = "WHERE session = ? AND line >= ?"
        params: tuple[int, ...] = (session, start)
        if stop is not None:
            where += " AND line < ?"
            params += (stop,)
        return self._select(f"{where} ORDER BY line", params, raw, output)

    def search(
        self,
        pattern: str = "*",
        n: int | None = None,
        *,
        unique: bool = False,
        raw: bool = True,
        output: bool = False,
    ) -> list[HistoryEntry]:
        """Cells whose source matches the glob ``pattern`` (``hist_access_type="search"``).

        The pattern must match the whole returned source (raw or not, as ``raw`` says), with
        SQLite ``GLOB`` rules: case-sensitive, ``*`` any run of characters (newlines too), ``?``
        one character, ``[...]`` a character class. So ``"a*"`` finds sources starting with "a"
        and ``"*a*"`` sources containing it. ``unique`` keeps only the latest cell of each
        distinct source; ``n`` then keeps only the last ``n`` matches (``n <= 0`` gives ``[]``).
        """
        if n is not None and n <= 0:
            return []
        column = "source_raw" if raw else "source"
        where = f"WHERE {column} GLOB ?"
        if unique:
            # Rank each source's cells newest first and keep the newest.
            latest = (
                f"SELECT session, line FROM (SELECT session, line, ROW_NUMBER() OVER"
                f" (PARTITION BY {column} ORDER BY session DESC, line DESC) AS rank"
                f" FROM history {where}) WHERE rank = 1"
            )
            where = f"WHERE (session, line) IN ({latest})"
        limit = -1 if n is None else n  # SQLite: a negative LIMIT means no limit
        sql = f"{where} ORDER BY session DESC, line DESC LIMIT ?"
        rows = self._select(sql, (pattern, limit), raw, output)
        rows.reverse()
        return rows

    @staticmethod
    def to_reply(entries: Iterable[HistoryEntry], output: bool) -> list[list[Any]]:
        """The ``history`` list of a ``history_reply``: ``[session, line, input]`` per entry, or
        ``[session, line, [input, output]]`` when the request had ``output=True``."""
        if output:
            return [[e.session, e.line, [e.source, e.output]] for e in entries]
        return [[e.session, e.line, e.source] for e in entries]

    # -- internals -----------------------------------------------------------------------------

    def _select(
        self, clauses: str, params: tuple[Any, ...], raw: bool, output: bool
    ) -> list[HistoryEntry]:
        self.flush()
        column = "source_raw" if raw else "source"
        out = "output" if output else "NULL"
        sql = f"SELECT session, line, {column}, {out} FROM history {clauses}"
        return [HistoryEntry(*row) for row in self._conn.execute(sql, params)]

    def _use_memory(self, reason: str, session: int | None) -> None:
        """Switch to an in-memory database, keeping ``session`` (and its cells, if the old
        database can still be read) or allocating a fresh one when ``session`` is None."""
        rows: list[Any] = []
        old: sqlite3.Connection | None = getattr(self, "_conn", None)
        if old is not None:
            # If the file is unreadable too, this session's earlier cells are lost.
            with contextlib.suppress(sqlite3.Error):
                rows = old.execute(_SELECT_SESSION_ROWS, (session,)).fetchall()
            old.close()
        self._conn, self.session = _open(_MEMORY, self._busy_timeout, session)
        self._conn.executemany(_INSERT, rows)
        self.path = None
        self.warning = f"{reason}; history is kept in memory and will not be saved"


def _open(
    path: str | Path, busy_timeout: float, session: int | None = None
) -> tuple[sqlite3.Connection, int]:
    """Connect, configure and allocate a session (or claim ``session`` if given).

    Raises :class:`OSError` or :class:`sqlite3.Error` if the database cannot be used; the
    connection is closed in that case.
    """
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions, we issue BEGIN/COMMIT ourselves.
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        _use_wal(conn, time.monotonic() + busy_timeout)
        conn.execute("PRAGMA synchronous = NORMAL")  # per connection; safe in WAL mode
        return conn, _start_session(conn, session)
    except BaseException:
        conn.close()
        raise


def _use_wal(conn: sqlite3.Connection, deadline: float) -> None:
    """Put the file in WAL journal mode (persistent, so a no-op once done; ``:memory:`` stays
    "memory", and a file system without WAL support keeps its mode: both are accepted).

    Switching takes an exclusive lock, and when several kernels open a fresh file at once SQLite
    answers SQLITE_BUSY to all but one *without* calling the busy handler (they all hold a shared
    lock, so waiting could deadlock). A loser retries: having released its lock, its next attempt
    waits in the busy handler until the winner is done, then finds the file already in WAL mode.
    Raises the last :class:`sqlite3.OperationalError` once ``deadline`` (monotonic) has passed.
    """
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # any extended BUSY code
            if not busy or time.monotonic() >= deadline:
                raise


def _start_session(conn: sqlite3.Connection, session: int | None) -> int:
    """Create the schema if needed and insert this session's row, in one write transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise _SchemaError(f"written by a newer Loom (schema version {version})")
        conn.execute(_CREATE_SESSIONS)
        conn.execute(_CREATE_HISTORY)
        for check in _CHECK_SCHEMA:
            conn.execute(check)
        conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        cursor = conn.execute(
            "INSERT INTO sessions (session, start) VALUES (?, ?)", (session, _now())
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    allocated = cursor.lastrowid
    assert allocated is not None  # an INSERT into a rowid table always sets it
    return allocated
