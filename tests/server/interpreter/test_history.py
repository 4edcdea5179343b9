"""The kernel's history store: query semantics, the reply format, persistence, concurrent
kernels sharing one file (real processes), and falling back to memory instead of crashing."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel.server.interpreter._history_store import (
    HistoryEntry,
    HistoryStore,
    default_history_path,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def mem() -> Iterator[HistoryStore]:
    with HistoryStore(None) as store:
        yield store


def _fill(store: HistoryStore, *sources: str) -> None:
    """Store ``sources`` as lines 1, 2, ... of the store's session."""
    for line, source in enumerate(sources, start=1):
        store.store(line, source)


def _sources(entries: list[HistoryEntry]) -> list[str]:
    return [entry.source for entry in entries]


# -- opening -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [None, ":memory:"])
def test_memory_store_starts_session_one(path: str | None) -> None:
    with HistoryStore(path) as store:
        assert (store.session, store.path, store.warning) == (1, None, None)
        assert store.tail() == []


def test_file_store_creates_parent_directory_and_spec_schema(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "history.sqlite"
    with HistoryStore(path) as store:
        assert (store.session, store.path, store.warning) == (1, path, None)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        columns = {
            table: [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            for table in ("sessions", "history")
        }
        assert columns == {
            "sessions": ["session", "start", "end"],
            "history": ["session", "line", "source", "source_raw", "output"],
        }


# -- tail --------------------------------------------------------------------------------------


def test_tail_returns_the_last_n_oldest_first(mem: HistoryStore) -> None:
    _fill(mem, *(f"x = {i}" for i in range(1, 16)))
    assert _sources(mem.tail(3)) == ["x = 13", "x = 14", "x = 15"]
    assert [entry.line for entry in mem.tail()] == list(range(6, 16))
    assert len(mem.tail(100)) == 15
    assert mem.tail(0) == []
    assert mem.tail(-2) == []


def test_tail_can_leave_out_the_latest_cell(mem: HistoryStore) -> None:
    _fill(mem, "a", "b", "c", "d")
    assert _sources(mem.tail(2, include_latest=False)) == ["b", "c"]
    assert _sources(mem.tail(2, include_latest=True)) == ["c", "d"]


def test_raw_chooses_what_the_user_typed_or_what_ran(mem: HistoryStore) -> None:
    mem.store(1, "get_ipython().run_line_magic('time', 'f()')", raw="%time f()")
    mem.store(2, "y = 2")  # raw defaults to source
    assert _sources(mem.tail()) == ["%time f()", "y = 2"]
    assert _sources(mem.tail(raw=False)) == ["get_ipython().run_line_magic('time', 'f()')", "y = 2"]
    assert _sources(mem.range(raw=False)) == _sources(mem.tail(raw=False))


def test_storing_a_line_again_replaces_it(mem: HistoryStore) -> None:
    mem.store(1, "old", output="1")
    mem.store(1, "new")
    assert mem.tail(output=True) == [HistoryEntry(1, 1, "new", None)]


# -- range -------------------------------------------------------------------------------------


def test_range_is_start_inclusive_stop_exclusive(mem: HistoryStore) -> None:
    _fill(mem, "l1", "l2", "l3", "l4", "l5")
    assert _sources(mem.range(0, 2, 4)) == ["l2", "l3"]
    assert _sources(mem.range(0, 4)) == ["l4", "l5"]
    assert _sources(mem.range()) == ["l1", "l2", "l3", "l4", "l5"]
    assert _sources(mem.range(mem.session, 5, 6)) == ["l5"]
    assert mem.range(0, 3, 3) == []


def test_range_of_unknown_sessions_is_empty(mem: HistoryStore) -> None:
    _fill(mem, "a")
    assert mem.range(-1) == []  # no session before the first
    assert mem.range(7) == []


# -- search ------------------------------------------------------------------------------------


def test_search_glob_matches_the_whole_source(mem: HistoryStore) -> None:
    _fill(mem, "apple", "banana", "avocado", "Apricot", "cab", "x\nab")
    assert _sources(mem.search("a*")) == ["apple", "avocado"]  # anchored, case-sensitive
    assert _sources(mem.search("*ab*")) == ["cab", "x\nab"]  # `*` spans newlines
    assert _sources(mem.search("?ab")) == ["cab"]
    assert _sources(mem.search("[Aa]p*")) == ["apple", "Apricot"]
    assert _sources(mem.search("banana")) == ["banana"]
    assert len(mem.search()) == 6


def test_search_n_keeps_the_last_matches(mem: HistoryStore) -> None:
    _fill(mem, "a1", "b", "a2", "a3", "c")
    assert _sources(mem.search("a*", n=2)) == ["a2", "a3"]
    assert _sources(mem.search("a*", n=10)) == ["a1", "a2", "a3"]
    assert mem.search("a*", n=0) == []


def test_search_unique_keeps_the_latest_of_each_source(mem: HistoryStore) -> None:
    _fill(mem, "x", "y", "x", "z", "y", "x")
    unique = mem.search(unique=True)
    assert [(entry.line, entry.source) for entry in unique] == [(4, "z"), (5, "y"), (6, "x")]
    assert _sources(mem.search(unique=True, n=2)) == ["y", "x"]
    assert _sources(mem.search("[xz]", unique=True)) == ["z", "x"]


def test_search_matches_the_transformed_source_when_raw_is_false(mem: HistoryStore) -> None:
    mem.store(1, "run_magic('ls')", raw="%ls")
    assert _sources(mem.search("%*")) == ["%ls"]
    assert mem.search("%*", raw=False) == []
    assert _sources(mem.search("run*", raw=False)) == ["run_magic('ls')"]


_SOURCES = st.lists(st.text(alphabet="ab\n", max_size=3), max_size=12)
_PATTERNS = st.text(alphabet="ab*?", max_size=4)


@given(_SOURCES, _PATTERNS, st.none() | st.integers(1, 6), st.booleans())
def test_search_agrees_with_a_fnmatch_model(
    sources: list[str], pattern: str, n: int | None, unique: bool
) -> None:
    expected = [
        (line, source)
        for line, source in enumerate(sources, start=1)
        if fnmatch.fnmatchcase(source, pattern)
    ]
    if unique:
        latest = {source: line for line, source in expected}
        expected = [(line, source) for line, source in expected if latest[source] == line]
    if n is not None:
        expected = expected[-n:]
    with HistoryStore(None) as store:
        _fill(store, *sources)
        found = store.search(pattern, n, unique=unique)
    assert [(entry.line, entry.source) for entry in found] == expected


# -- output and the reply format ---------------------------------------------------------------


def test_output_is_returned_only_when_asked(mem: HistoryStore) -> None:
    mem.store(1, "1 + 1", output="2")
    mem.store(2, "x = 1")
    assert mem.tail() == [HistoryEntry(1, 1, "1 + 1", None), HistoryEntry(1, 2, "x = 1", None)]
    with_output = [HistoryEntry(1, 1, "1 + 1", "2"), HistoryEntry(1, 2, "x = 1", None)]
    assert mem.tail(output=True) == with_output
    assert mem.range(output=True) == with_output
    assert mem.search(output=True) == with_output


def test_to_reply_is_the_history_reply_wire_format(mem: HistoryStore) -> None:
    mem.store(1, "1 + 1", output="2")
    mem.store(2, "x = 1")
    assert HistoryStore.to_reply(mem.tail(), output=False) == [[1, 1, "1 + 1"], [1, 2, "x = 1"]]
    assert HistoryStore.to_reply(mem.tail(output=True), output=True) == [
        [1, 1, ["1 + 1", "2"]],
        [1, 2, ["x = 1", None]],
    ]
    assert HistoryStore.to_reply([], output=True) == []


# -- lifecycle and persistence -----------------------------------------------------------------


def test_close_is_idempotent_and_stops_writes(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite")
    store.close()
    store.close()
    with pytest.raises(ValueError, match="closed"):
        store.store(1, "x")


def test_history_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    with HistoryStore(path) as first:
        _fill(first, "a = 1", "b = 2", "c = 3")
        first.store(4, "a + b", output="3")
    with HistoryStore(path) as second:
        assert second.session == first.session + 1
        second.store(1, "d = 4")
        assert [(e.session, e.line) for e in second.tail(3)] == [(1, 3), (1, 4), (2, 1)]
        assert _sources(second.range(-1, 2, 4)) == ["b = 2", "c = 3"]
        assert second.range(-1) == second.range(first.session)
        assert second.range(-1, 4, output=True) == [HistoryEntry(1, 4, "a + b", "3")]
        assert _sources(second.range(0)) == ["d = 4"]
        assert _sources(second.search("[ad]*")) == ["a = 1", "a + b", "d = 4"]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        sessions = conn.execute('SELECT session, start, "end" FROM sessions').fetchall()
    assert [row[0] for row in sessions] == [1, 2]
    assert all(start and end and start <= end for _, start, end in sessions)


# -- real processes sharing one file -----------------------------------------------------------

_WRITER = """
import sys
from kernel.server.interpreter._history_store import HistoryStore
print("ready", flush=True)
sys.stdin.readline()  # all writers open the fresh file (switching it to WAL) at once
with HistoryStore(sys.argv[1]) as store:
    for line in range(1, int(sys.argv[2]) + 1):
        store.store(line, f"x = {line}", output=str(line))
    if store.warning is not None:
        sys.exit("fell back to memory: " + store.warning)
    print(store.session, flush=True)
"""

_CRASHER = """
import sys
from kernel.server.interpreter._history_store import HistoryStore
store = HistoryStore(sys.argv[1])
for line in range(1, 6):
    store.store(line, f"cell {line}")
print("stored", flush=True)
sys.stdin.readline()  # never answered: the parent kills us without close()
"""


def _spawn(stack: contextlib.ExitStack, code: str, *args: str) -> subprocess.Popen[str]:
    """Start ``python -c code args``; ``stack`` kills it by PID (if still running) and reaps it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    stack.enter_context(proc)  # on exit: close the pipes, wait
    stack.callback(_kill, proc)  # runs first
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)


def _readline(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline()


@pytest.mark.parametrize("writers", [2, 4])
def test_concurrent_kernels_never_see_a_locked_database(tmp_path: Path, writers: int) -> None:
    path, cells = tmp_path / "shared.sqlite", 300
    with contextlib.ExitStack() as stack:
        procs = [_spawn(stack, _WRITER, str(path), str(cells)) for _ in range(writers)]
        for proc in procs:
            assert _readline(proc) == "ready\n", proc.communicate(timeout=60)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [(*proc.communicate(timeout=60), proc.returncode) for proc in procs]

    for out, err, returncode in results:
        assert "database is locked" not in out + err
        assert returncode == 0, err
    sessions = sorted(int(out) for out, _, _ in results)
    assert sessions == list(range(1, writers + 1))
    with contextlib.closing(sqlite3.connect(path)) as conn:
        counts = conn.execute("SELECT session, COUNT(*) FROM history GROUP BY session").fetchall()
    assert counts == [(session, cells) for session in sessions]


def test_cells_of_a_killed_kernel_survive(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    with contextlib.ExitStack() as stack:
        proc = _spawn(stack, _CRASHER, str(path))
        assert _readline(proc) == "stored\n", proc.communicate(timeout=60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    with HistoryStore(path) as store:
        assert store.session == 2
        assert _sources(store.range(-1)) == [f"cell {line}" for line in range(1, 6)]


def test_storing_a_cell_is_cheap(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "history.sqlite") as store:
        durations = []
        for line in range(1, 201):
            began = time.perf_counter()
            store.store(line, f"x = {line}", output=str(line))
            durations.append(time.perf_counter() - began)
    assert statistics.median(durations) < 1e-3


# -- never crash the kernel --------------------------------------------------------------------


def _assert_in_memory(store: HistoryStore, reason: str) -> None:
    assert store.path is None
    assert store.warning is not None
    assert reason in store.warning
    assert "memory" in store.warning
    store.store(1, "still works", output="ok")
    assert store.tail(output=True) == [HistoryEntry(store.session, 1, "still works", "ok")]


def test_corrupt_file_falls_back_to_memory(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    garbage = b"this is not sqlite\x00\xff" * 200
    path.write_bytes(garbage)
    with HistoryStore(path) as store:
        _assert_in_memory(store, "file is not a database")
        assert str(path) in (store.warning or "")
    assert path.read_bytes() == garbage  # the user's file is left alone


def test_unopenable_paths_fall_back_to_memory(tmp_path: Path) -> None:
    with HistoryStore(tmp_path) as store:  # a directory
        _assert_in_memory(store, "unable to open database file")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with HistoryStore(blocker / "history.sqlite") as store:  # parent is a file
        _assert_in_memory(store, str(blocker))


def test_foreign_schema_falls_back_without_touching_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ipython.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE history (session, line, source, source_raw)")
        conn.commit()
    with HistoryStore(path) as store:
        _assert_in_memory(store, "no such column: output")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (0,)
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("history",)]


def test_newer_schema_falls_back_to_memory(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    HistoryStore(path).close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")
    with HistoryStore(path) as store:
        _assert_in_memory(store, "schema version 99")


def test_failed_write_falls_back_keeping_the_session(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    with HistoryStore(path, busy_timeout=0.01) as store:
        store.store(1, "before")
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another kernel hogging the write lock
            store.store(2, "during")
            other.execute("ROLLBACK")
        assert store.session == 1
        assert store.path is None
        assert "database is locked" in (store.warning or "")
        assert _sources(store.tail()) == ["before", "during"]


# -- default location --------------------------------------------------------------------------


def test_default_history_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_HISTORY_FILE", str(tmp_path / "mine.sqlite"))
    assert default_history_path() == tmp_path / "mine.sqlite"
    monkeypatch.delenv("LOOM_HISTORY_FILE")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    assert default_history_path() == tmp_path / "data" / "loom" / "history.sqlite"
