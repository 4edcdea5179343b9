"""Purging task records and the hub's history (ipyparallel's ``purge_hub_results``,
``purge_local_results``, ``purge_results``, ``purge_everything``, ``hub_history``).

First the pure parts, without processes: the database's deletions (on disk and in
memory), the hub's ``purge_request`` / ``history_request`` and the ids it keeps so that
a record arriving after its purge stays purged, and the client's reading of ``jobs``.
Then real clusters: by msg_id, by ``AsyncResult`` (a load-balanced task's attempts), by
engine, ``"all"``, the history's order, the errors, a running task (never purged by
name), and the in-memory database (``db=False``) with records that arrive after their
purge (engines hold them for half a second, ``LOOM_RECORD_QUIET``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from _cluster_support import (
    WAIT_WHILE_FLAG,
    isolate,
    module_cluster,
    running_cluster,
)

from kernel.protocol import JSONDict, MalformedMessage, Message, Session
from parallel import Client, NoEnginesRegistered
from parallel.client._asyncresult import AsyncResult
from parallel.client._purge_client import msg_ids_of
from parallel.controller._db import SQL_CHUNK, TaskDB
from parallel.controller._purge import PurgeRequest, Tombstones
from parallel.controller._records import Records
from parallel.engine._hub_link import encode_batch

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 30

# -- the database ----------------------------------------------------------------------


def _task(msg_id: str, submitted: str, task_id: str | None = None) -> dict[str, Any]:
    header = {"msg_id": msg_id, "msg_type": "apply_request", "session": "s", "date": submitted}
    metadata = {"task_id": task_id} if task_id else {}
    return {  # as the engine's recorder makes it
        "kind": "task", "msg_id": msg_id, "task_id": task_id, "submitted": submitted,
        "client_uuid": "s", "header": header, "metadata": metadata, "started": submitted,
    }  # fmt: skip


def _result(msg_id: str, status: str = "ok") -> dict[str, Any]:
    content = {"status": status}
    return {"kind": "result", "msg_id": msg_id, "completed": "2027", "result_content": content}


def _store(db: TaskDB, engine: int, *records: dict[str, Any]) -> None:
    db.add_records(f"uuid{engine}", engine, [(r, []) for r in records], "received")


def _ids(db: TaskDB) -> list[str]:
    return sorted(r["msg_id"] for r in db.query({}, ["msg_id"]))


@pytest.fixture(params=["on disk", "in memory"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskDB]:
    store = TaskDB(tmp_path / "records.db" if request.param == "on disk" else None)
    yield store
    store.close()


def _filled(db: TaskDB) -> TaskDB:
    """m1, m2 finished on engine 0; m3 finished and m4 running on engine 1; a1 (failed)
    and a2 (ok): two attempts of load-balanced task t1, on engines 0 and 1."""
    _store(db, 0, _task("m1", "01"), _result("m1"), _task("m2", "02"), _result("m2"))
    _store(db, 1, _task("m3", "03"), _result("m3"), _task("m4", "04"))
    _store(db, 0, _task("a1", "05", "t1"), _result("a1", "error"))
    _store(db, 1, _task("a2", "06", "t1"), _result("a2"))
    return db


def test_db_purges_by_msg_id_and_by_task_id_every_attempt(db: TaskDB) -> None:
    _filled(db)
    assert db.purge(["m1", "t1", "unknown"]) == 3
    assert _ids(db) == ["m2", "m3", "m4"]
    assert db.find(["m1", "t1"], ["msg_id"]) == {}


def test_db_purges_the_finished_records_of_engines_or_all_and_keeps_running_ones(
    db: TaskDB,
) -> None:
    _filled(db)
    assert db.purge(engine_ids=[1]) == 2  # m3 and a2; m4 runs
    assert _ids(db) == ["a1", "m1", "m2", "m4"]
    assert db.purge(everything=True) == 3
    assert _ids(db) == ["m4"]
    # A deferred batch (not committed yet) is purged with the rest: one transaction.
    db.add_rows(*_rows(_task("m5", "07"), _result("m5")), defer=True)
    assert db.purge(everything=True) == 1
    assert _ids(db) == ["m4"]


def test_db_names_pending_ids_and_takes_more_ids_than_sqlite_binds_at_once(db: TaskDB) -> None:
    _filled(db)
    assert db.pending_of(["m1", "m4", "t1", "nope"]) == ["m4"]
    _store(db, 1, _task("a3", "08", "t2"))  # a load-balanced task's attempt, running
    assert db.pending_of(["t2", "a3", "m4"]) == ["t2", "a3", "m4"]
    many = [f"x{i}" for i in range(3 * SQL_CHUNK)]
    db.add_records("u", 0, [(_task(m, "09"), []) for m in many], "received")
    assert db.pending_of(["m1", *many]) == many
    assert db.purge([*many, "m1"]) == len(many) + 1
    assert "m1" not in _ids(db)
    assert not set(many) & set(_ids(db))


def test_db_history_is_each_task_once_in_submission_order(db: TaskDB) -> None:
    # Stored out of order: history follows the submission times, not arrival.
    _store(db, 1, _task("late", "2026-05"), _result("late"))
    _store(db, 0, _task("a2", "2026-04", "t1"), _result("a2"))
    _store(db, 0, _task("a1", "2026-02", "t1"), _result("a1", "error"))
    _store(db, 0, _task("early", "2026-01"), _result("early"))
    _store(db, 0, _task("middle", "2026-03"))
    assert db.history() == ["early", "t1", "middle", "late"]
    db.purge(["t1", "early"])
    assert db.history() == ["middle", "late"]


# -- the hub ---------------------------------------------------------------------------

SESSION = Session(b"key")


def _rows(*records: dict[str, Any]) -> tuple[Any, ...]:
    from parallel.controller._records import rows_of

    rows, frames = encode_batch([(r, [], None) for r in records])
    return rows_of(rows, frames, "uuid0", 0, "received")


def _batch(seq: int, *records: dict[str, Any]) -> Message:
    """An engine's record batch, as its hub link sends it (asking for a reply)."""
    rows, frames = encode_batch([(r, [], None) for r in records])
    content: JSONDict = {"uuid": "uuid0", "id": 0, "link": "L", "seq": seq, "ack": True}
    content |= {"rows": rows, "sizes": [len(f) for f in frames]}
    return SESSION.message("record_request", content, buffers=[b"".join(frames)])


def _ask(records: Records, msg_type: str, content: JSONDict) -> JSONDict:
    reply = records.answer(SESSION.message(msg_type, content))
    assert reply is not None
    return reply.content


def _purge(records: Records, msg_ids: object, engine_ids: object = None) -> JSONDict:
    return _ask(records, "purge_request", {"msg_ids": msg_ids, "engine_ids": engine_ids})


def _history(records: Records) -> list[str]:
    return list(_ask(records, "history_request", {})["history"])


def test_the_hub_refuses_a_running_task_named_and_then_purges_nothing() -> None:
    records = Records(_filled(TaskDB(None)))
    reply = _purge(records, ["m1", "m4"], [0])
    assert reply == {"status": "ok", "purged": 0, "running": ["m4"]}
    assert _history(records) == ["m1", "m2", "m3", "m4", "t1"]
    assert _purge(records, ["m1"], [1]) == {"status": "ok", "purged": 3, "running": []}
    assert _history(records) == ["m2", "m4", "t1"]  # t1's attempt on engine 0 is left
    assert _purge(records, "all") == {"status": "ok", "purged": 2, "running": []}
    assert _history(records) == ["m4"]


def test_records_that_arrive_after_their_purge_by_name_are_dropped() -> None:
    records = Records(TaskDB(None))
    # Purged while still in their engine's record window: the hub knows neither yet.
    assert _purge(records, ["m1", "t1"])["purged"] == 0
    reply = records.answer(
        _batch(1, _task("m1", "01"), _result("m1"), _task("a1", "02", "t1"), _result("a1"))
    )
    assert reply is not None
    assert reply.content == {"status": "ok"}  # the batch is confirmed all the same
    assert records.committed("uuid0", "L") == [1, 1]
    assert _history(records) == []
    records.answer(_batch(2, _task("m2", "03"), _result("m2")))  # others are stored
    assert _history(records) == ["m2"]
    # "all" and engines name no ids: what arrives after them is kept.
    _purge(records, "all")
    records.answer(_batch(3, _task("m3", "04"), _result("m3")))
    assert _history(records) == ["m3"]


def test_deferred_batches_are_purged_with_the_committed_ones() -> None:
    records = Records(TaskDB(None))
    batch = _batch(1, _task("m1", "01"), _result("m1"))
    batch.content["ack"] = False  # stored in the open transaction, not committed yet
    assert records.answer(batch) is None
    assert records.unflushed
    assert _purge(records, ["m1"])["purged"] == 1
    assert records.committed("uuid0", "L") == [1, 1]  # committed, then purged


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ({}, "a purge names msg_ids, 'all' or engine_ids"),
        ({"msg_ids": [], "engine_ids": []}, "a purge names"),
        ({"msg_ids": "some"}, "msg_ids must be 'all' or a list of strings"),
        ({"msg_ids": ["a", 1]}, "msg_ids must be"),
        ({"msg_ids": {"$in": ["a"]}}, "msg_ids must be"),
        ({"engine_ids": [0, "1"]}, "engine_ids must be null or a list of engine ids"),
        ({"engine_ids": [True]}, "engine_ids must be"),
        ({"engine_ids": 3}, "engine_ids must be"),
    ],
)
def test_a_malformed_purge_request_is_one_clear_error(content: JSONDict, error: str) -> None:
    with pytest.raises(MalformedMessage, match=error):
        PurgeRequest.of(content)
    records = Records(_filled(TaskDB(None)))
    with pytest.raises(MalformedMessage, match=error):
        records.answer(SESSION.message("purge_request", content))
    assert len(_history(records)) == 5


def test_tombstones_keep_the_newest_ids() -> None:
    kept = Tombstones(limit=3)
    assert not kept
    kept.add(["a", "b", "c"])
    kept.add(["a"])  # named again: newest again
    kept.add(["d"])
    assert [m for m in "abcd" if m in kept] == ["a", "c", "d"]
    rows = [("a", None), ("x", "c"), ("y", None)]
    assert kept.drop_from(rows, task_id=True) == [("y", None)]
    assert kept.drop_from(rows, task_id=False) == [("x", "c"), ("y", None)]


# -- the client's reading of jobs ------------------------------------------------------


def _result_of(*msg_ids: str) -> AsyncResult:
    """An ``AsyncResult`` of no client (only its msg_ids are read here)."""
    return AsyncResult(cast(Client, SimpleNamespace(_pump=None)), msg_ids)


def test_jobs_are_msg_ids_async_results_or_all() -> None:
    first, second = _result_of("a", "b"), _result_of("c")
    assert msg_ids_of("all") == ("all", [])
    assert msg_ids_of("m") == (["m"], [])
    assert msg_ids_of(first) == (["a", "b"], [first])
    assert msg_ids_of(["m", second, first]) == (["m", "c", "a", "b"], [second, first])
    assert msg_ids_of(m for m in ("x", "y")) == (["x", "y"], [])
    assert msg_ids_of(None) == ([], [])
    assert msg_ids_of(()) == ([], [])


@pytest.mark.parametrize(
    ("jobs", "error"),
    [
        (3, r"not 3 \(int\): the client keeps no history to index"),
        (b"m", r"jobs must be 'all', a msg_id, an AsyncResult or a list of them, not b'm'"),
        ({"m": 1}, r"not \{'m': 1\} \(dict\)"),
        (1.5, r"not 1.5 \(float\)"),
        (["m", None], r"each job must be a msg_id or an AsyncResult, not None \(NoneType\)"),
        ([["m"]], r"each job must be .*, not \['m'\] \(list\)"),
    ],
)
def test_a_job_of_another_type_is_a_type_error_naming_it(jobs: object, error: str) -> None:
    with pytest.raises(TypeError, match=error):
        msg_ids_of(jobs)


def test_an_empty_msg_id_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="'' is not a msg_id"):
        msg_ids_of("")
    with pytest.raises(ValueError, match="'' is not a msg_id"):
        msg_ids_of(["m", ""])


# -- real clusters ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """Two engines, records in SQLite next to the cluster file (the default)."""
    with module_cluster(tmp_path_factory, "purge", 2) as client:
        yield client


def _recorded(rc: Client, ids: list[str]) -> None:
    """Wait until the controller's records show ``ids`` finished."""
    deadline = time.monotonic() + TIMEOUT
    while not set(ids) <= set(rc.result_status(ids)["completed"]):
        assert time.monotonic() < deadline, f"{ids} never finished in the records"


def _running_in_records(rc: Client, msg_id: str) -> None:
    """Wait until the controller's records show ``msg_id`` started and not finished
    (``result_status`` would call a task this client waits for pending without one)."""
    deadline = time.monotonic() + TIMEOUT
    while rc.db_query({"msg_id": msg_id}, ["status"]) != [{"msg_id": msg_id, "status": "pending"}]:
        assert time.monotonic() < deadline, f"{msg_id} never running in the records"


def _in_records(rc: Client, ids: list[str]) -> list[str]:
    """Which of ``ids`` the records have, by msg_id or task id."""
    rows = rc.db_query({"msg_id": {"$in": ids}}, ["msg_id"])
    rows += rc.db_query({"task_id": {"$in": ids}}, ["task_id"])
    return sorted({r.get("task_id") or r["msg_id"] for r in rows})


def _direct(rc: Client, count: int) -> list[str]:
    ars = [rc[i % 2].apply_async(pow, i, 2) for i in range(count)]
    assert [ar.get(timeout=TIMEOUT) for ar in ars] == [i * i for i in range(count)]
    ids = [ar.msg_ids[0] for ar in ars]
    _recorded(rc, ids)
    return ids


def test_purge_by_msg_id_forgets_those_records_only(rc: Client) -> None:
    ids = _direct(rc, 4)
    rc.purge_hub_results(ids[:2])
    rc.purge_results(ids[2])  # the client's side checks, then the same
    assert _in_records(rc, ids) == sorted(ids[3:])
    history = rc.hub_history()
    assert ids[3] in history
    assert not set(ids[:3]) & set(history)
    assert rc.result_status(ids[:3])["unknown"] == ids[:3]
    with pytest.raises(KeyError, match=f"records of {ids[0]} were purged"):
        rc.get_result(ids[0])  # at once: this client purged it (no wait for a record)
    assert rc.get_result(ids[3]).get(timeout=TIMEOUT) == 9
    rc.purge_hub_results([ids[0], "never-a-task"])  # already gone, unknown: no error


def test_purge_by_async_result_forgets_a_load_balanced_task_and_its_attempts(rc: Client) -> None:
    view = rc.load_balanced_view()
    single = view.apply_async(pow, 2, 5)
    mapped = view.map_async(abs, [-1, -2, -3])
    kept = view.apply_async(pow, 3, 3)
    assert (single.get(TIMEOUT), mapped.get(TIMEOUT), kept.get(TIMEOUT)) == (32, [1, 2, 3], 27)
    ids = [*single.msg_ids, *mapped.msg_ids, *kept.msg_ids]
    _recorded(rc, ids)
    rc.purge_results([single, mapped])
    assert _in_records(rc, ids) == kept.msg_ids
    assert not rc.db_query({"task_id": {"$in": [*single.msg_ids, *mapped.msg_ids]}})
    assert not set(single.msg_ids + mapped.msg_ids) & set(rc.hub_history())
    with pytest.raises(KeyError, match="were purged"):
        rc.get_result(mapped.msg_ids)


def test_hub_history_lists_each_task_once_in_submission_order(rc: Client, tmp_path: Path) -> None:
    flag = tmp_path / "running"
    flag.write_text("")
    slow = rc[0].apply_async(WAIT_WHILE_FLAG, str(flag))  # submitted first, recorded last
    fast = [rc[1].apply_async(pow, i, 2) for i in range(3)]
    balanced = rc.load_balanced_view(targets=[1]).apply_async(abs, -5)
    for ar in [*fast, balanced]:
        ar.get(timeout=TIMEOUT)
    flag.unlink()
    assert slow.get(timeout=TIMEOUT) == "done"
    ids = [slow.msg_ids[0], *(ar.msg_ids[0] for ar in fast), balanced.msg_ids[0]]
    _recorded(rc, ids)
    history = rc.hub_history()
    assert [m for m in history if m in ids] == ids
    assert len(history) == len(set(history))
    assert all(isinstance(m, str) for m in history)


def test_purge_by_targets_keeps_other_engines_and_running_tasks(rc: Client, tmp_path: Path) -> None:
    ids = _direct(rc, 4)  # engines 0, 1, 0, 1
    flag = tmp_path / "running"
    flag.write_text("")
    running = rc[1].apply_async(WAIT_WHILE_FLAG, str(flag))
    running_id = running.msg_ids[0]
    try:
        _running_in_records(rc, running_id)  # its start reached the controller
        with pytest.raises(RuntimeError, match=f"still running: {running_id}"):
            rc.purge_local_results(targets=[1])  # this client waits for a task there
        rc.purge_hub_results(targets=[1])
        assert _in_records(rc, ids) == sorted(ids[0::2])
        assert rc.db_query({"msg_id": running_id}, ["status"]) == [
            {"msg_id": running_id, "status": "pending"}
        ]
    finally:
        flag.unlink()
    assert running.get(timeout=TIMEOUT) == "done"
    _recorded(rc, [running_id])
    rc.purge_results(targets=1)  # an int is one engine, as views take it
    assert _in_records(rc, [*ids, running_id]) == sorted(ids[0::2])


def test_a_running_task_is_not_purged_by_name(rc: Client, tmp_path: Path) -> None:
    flag = tmp_path / "running"
    flag.write_text("")
    running = rc[0].apply_async(WAIT_WHILE_FLAG, str(flag))
    running_id = running.msg_ids[0]
    other = Client(rc.cluster_file)
    try:
        _running_in_records(rc, running_id)
        for purge in (rc.purge_hub_results, rc.purge_local_results, rc.purge_results):
            with pytest.raises(RuntimeError, match=f"still running: {running_id} .*nothing was"):
                purge(running)
            with pytest.raises(RuntimeError, match="this client waits for them"):
                purge([running_id])
        with pytest.raises(RuntimeError, match="still running"):
            rc.purge_everything()  # as ipyparallel: not while this client waits
        # Another client does not wait for it: the controller's records refuse it.
        with pytest.raises(RuntimeError, match="the controller's records show them running"):
            other.purge_hub_results(running_id)
        other.purge_local_results(running_id)  # nothing of it here: nothing to refuse
        assert rc.db_query({"msg_id": running_id}, ["status"])[0]["status"] == "pending"
    finally:
        flag.unlink()
        other.close()
    assert running.get(timeout=TIMEOUT) == "done"
    _recorded(rc, [running_id])
    rc.purge_hub_results(running)
    assert _in_records(rc, [running_id]) == []


def test_purge_all_keeps_only_running_tasks_and_purge_everything_the_rest(
    rc: Client, tmp_path: Path
) -> None:
    ids = _direct(rc, 2)
    flag = tmp_path / "running"
    flag.write_text("")
    running = rc[1].apply_async(WAIT_WHILE_FLAG, str(flag))
    running_id = running.msg_ids[0]
    try:
        _running_in_records(rc, running_id)
        rc.purge_hub_results("all")
        assert rc.hub_history() == [running_id]
    finally:
        flag.unlink()
    assert running.get(timeout=TIMEOUT) == "done"
    _recorded(rc, [running_id])
    rc.purge_everything()
    assert rc.hub_history() == []
    assert rc.db_query({}) == []
    assert _in_records(rc, [*ids, running_id]) == []


@pytest.mark.parametrize("call", ["purge_hub_results", "purge_local_results", "purge_results"])
def test_bad_arguments_are_clear_errors_and_send_nothing(rc: Client, call: str) -> None:
    ids = _direct(rc, 1)
    purge = getattr(rc, call)
    nothing: tuple[object, ...]
    for nothing in [(), ([],), ([], []), (None, None), ([], ())]:
        with pytest.raises(ValueError, match="nothing to purge: give jobs"):
            purge(*nothing)
    with pytest.raises(TypeError, match=r"not 0 \(int\): the client keeps no history"):
        purge(0)
    with pytest.raises(TypeError, match=r"each job must be a msg_id or an AsyncResult"):
        purge([ids[0], 7])
    with pytest.raises(TypeError, match="targets must be engine ids"):
        purge(targets=["0"])
    with pytest.raises(NoEnginesRegistered, match="engine 9 is not registered"):
        purge(ids, targets=[9])
    assert _in_records(rc, ids) == ids  # nothing was purged


# -- records in memory, arriving after their purge -------------------------------------


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """One engine that holds its records for half a second (a record window and a quiet
    time of 0.5 s: a reply's record is still in the engine right after the reply, and
    a running task's start reaches the controller within 1.5 s), records in memory
    (``db=False``)."""
    with pytest.MonkeyPatch.context() as patch:
        isolate(patch, tmp_path_factory.mktemp("held"))
        patch.setenv("LOOM_RECORD_QUIET", "0.5")
        patch.setenv("LOOM_RECORD_WINDOW", "0.5")
        with running_cluster(1, db=False) as (cluster, client):
            assert not Path(str(cluster.cluster_file)).with_suffix(".db").exists()
            yield client


def test_a_record_arriving_after_its_purge_stays_purged(held: Client) -> None:
    rc = held
    early = rc[0].apply_async(abs, -3)
    assert early.get(timeout=TIMEOUT) == 3
    rc.purge_results(early)  # its record is still in the engine for half a second
    later = rc[0].apply_async(abs, -4)
    assert later.get(timeout=TIMEOUT) == 4
    _recorded(rc, later.msg_ids)  # the engine sends its records in order: early's came
    assert _in_records(rc, [*early.msg_ids, *later.msg_ids]) == later.msg_ids
    assert early.msg_ids[0] not in rc.hub_history()


def test_a_task_finished_here_but_running_in_the_records_is_purged_once_they_say_so(
    held: Client, tmp_path: Path
) -> None:
    rc = held
    flag = tmp_path / "running"
    flag.write_text("")
    task = rc[0].apply_async(WAIT_WHILE_FLAG, str(flag))
    _running_in_records(rc, task.msg_ids[0])  # its start went at the engine's ping
    flag.unlink()
    assert task.get(timeout=TIMEOUT) == "done"
    # Its reply's record waits half a second in the engine: the purge waits for it.
    rc.purge_hub_results(task)
    assert _in_records(rc, task.msg_ids) == []
    after = rc[0].apply_async(abs, -1)
    assert after.get(timeout=TIMEOUT) == 1
    _recorded(rc, after.msg_ids)
    assert _in_records(rc, [*task.msg_ids, *after.msg_ids]) == after.msg_ids
