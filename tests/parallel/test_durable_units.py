"""The pure parts of durable results: the engine's controller watch and the task database."""

from __future__ import annotations

from pathlib import Path

import pytest

from parallel.controller._db import (
    INFLIGHT_REASON,
    QueryError,
    TaskDB,
    pack_buffers,
    unpack_buffers,
    where_clause,
)
from parallel.engine._controller_watch import Action, ControllerWatch, WatchConfig

CONFIG = WatchConfig(ping_interval=1.0, lost_after=3.0, grace=10.0)


def test_watch_pings_every_interval_and_reports_silence_once() -> None:
    watch = ControllerWatch(CONFIG, now=0.0)
    assert watch.tick(0.5) == []
    assert watch.tick(1.0) == [Action.PING]
    assert watch.tick(1.5) == []
    assert watch.answered(1.6, registered=True) == []
    assert watch.tick(2.0) == [Action.PING]
    assert watch.tick(4.7) == [Action.SILENT, Action.PING]  # last heard at 1.6
    assert watch.tick(5.7) == [Action.PING]  # silent once, pinging on
    assert watch.answered(6.0, registered=True) == [Action.BACK]
    assert not watch.silent


def test_watch_gives_up_after_the_grace() -> None:
    watch = ControllerWatch(CONFIG, now=0.0)
    actions = [a for t in range(1, 12) for a in watch.tick(float(t))]
    assert actions.count(Action.SILENT) == 1
    assert actions[-1] is Action.GIVE_UP
    assert Action.GIVE_UP not in actions[:-1]


def test_an_unknown_engine_registers_again_until_the_hub_answers() -> None:
    watch = ControllerWatch(CONFIG, now=0.0)
    assert watch.answered(0.5, registered=False) == [Action.REGISTER]
    assert watch.registering
    assert watch.tick(1.5) == [Action.REGISTER]  # the registration is sent again if unanswered
    assert watch.registered(1.6) == []
    assert watch.tick(2.6) == [Action.PING]


def test_where_clause_takes_mongo_operators_and_known_keys_only() -> None:
    sql, params = where_clause({"msg_id": {"$in": ["a", "b"]}, "completed": {"$ne": None}})
    assert sql == "msg_id IN (?, ?) AND completed IS NOT NULL"
    assert params == ["a", "b"]
    assert where_clause({"engine_id": 2}) == ("engine_id = ?", [2])
    sql, params = where_clause({"submitted": {"$gte": "2026", "$lt": "2027"}})
    assert sql == "submitted >= ? AND submitted < ?"
    with pytest.raises(QueryError, match="cannot query on 'drop table'"):
        where_clause({"drop table": 1})
    with pytest.raises(QueryError, match="unknown operator '\\$regex'"):
        where_clause({"msg_id": {"$regex": "a"}})
    with pytest.raises(QueryError, match="cannot query on 'buffers'"):
        where_clause({"buffers": 1})


def test_buffers_round_trip() -> None:
    frames: list[bytes | memoryview] = [b"", b"abc", memoryview(b"x" * 1000)]
    assert unpack_buffers(pack_buffers(frames)) == [b"", b"abc", b"x" * 1000]
    assert unpack_buffers(None) == []


def _task(msg_id: str, task_id: str | None = None) -> dict[str, object]:
    metadata = {"task_id": task_id} if task_id else {}
    header = {"msg_id": msg_id, "msg_type": "apply_request", "session": "s1", "date": "2026-12-02"}
    return {"kind": "task", "msg_id": msg_id, "header": header, "metadata": metadata}


def _result(msg_id: str, status: str = "ok", completed: str = "2026-12-03") -> dict[str, object]:
    return {
        "kind": "result",
        "msg_id": msg_id,
        "completed": completed,
        "result_content": {"status": status},
        "result_metadata": {},
    }


@pytest.mark.parametrize("on_disk", [True, False])
def test_db_stores_finds_and_fails_what_was_running(tmp_path: Path, on_disk: bool) -> None:
    path = tmp_path / "c.db" if on_disk else None
    db = TaskDB(path)
    db.add_records(
        "u0",
        0,
        [(_task("m1"), [b"call"]), (_result("m1"), [b"value"]), (_task("m2"), [b"call2"])],
        "now",
    )
    # Two attempts of one load-balanced task: the one that succeeded answers its task id.
    db.add_records(
        "u1", 1, [(_task("a1", "t1"), []), (_result("a1", "error", "2026-12-04"), [])], "n"
    )
    db.add_records("u0", 0, [(_task("a2", "t1"), []), (_result("a2", "ok", "2026-12-03"), [])], "n")
    db.add_records("u0", 0, [(_result("m1"), [b"value"])], "again")  # a resend: no duplicate
    found = db.find(["m1", "t1", "nope"], ["msg_id", "status", "result_buffers", "buffers"])
    assert set(found) == {"m1", "t1"}
    assert found["m1"]["result_buffers"] == [b"value"]
    assert found["m1"]["buffers"] == [b"call"]
    assert found["t1"]["msg_id"] == "a2"
    assert [r["msg_id"] for r in db.query({"status": "pending"}, ["msg_id"])] == ["m2"]
    assert db.fail_pending(INFLIGHT_REASON, "later") == 1
    row = db.query({"msg_id": "m2"}, ["status", "result_content", "client_uuid", "header"])[0]
    assert row["status"] == "failed"
    assert row["result_content"]["evalue"] == INFLIGHT_REASON
    assert row["client_uuid"] == "s1"
    assert row["header"]["msg_type"] == "apply_request"
    # A late result from an engine that survived replaces the failure.
    db.add_records("u0", 0, [(_result("m2"), [b"late"])], "later still")
    assert db.query({"msg_id": "m2"}, ["status"])[0]["status"] == "ok"
    with pytest.raises(QueryError, match="unknown key 'bogus'"):
        db.query({}, ["bogus"])
    db.close()
    if on_disk:
        reopened = TaskDB(path)
        assert len(reopened.query({}, ["msg_id"])) == 4
        reopened.close()


def test_omitted_buffers_are_noted_in_the_metadata() -> None:
    db = TaskDB(None)
    task = {**_task("big"), "buffers_omitted": 100_000_000}
    result = {**_result("big"), "result_omitted": 200_000_000}
    db.add_records("u0", 0, [(task, []), (result, [])], "now")
    row = db.query({"msg_id": "big"}, ["metadata", "result_metadata", "buffers"])[0]
    assert row["metadata"]["loom_buffers_omitted"] == 100_000_000
    assert row["result_metadata"]["loom_result_omitted"] == 200_000_000
    assert row["buffers"] == []


def test_a_lost_engine_fails_only_its_own_running_tasks() -> None:
    db = TaskDB(None)
    db.add_records("u0", 0, [(_task("on0"), [])], "now")
    db.add_records("u1", 1, [(_task("on1"), [])], "now")
    assert db.fail_pending("engine 1 died", "later", engine_uuid="u1", ename="EngineError") == 1
    rows = {r["msg_id"]: r for r in db.query({}, ["msg_id", "status", "result_content"])}
    assert rows["on0"]["status"] == "pending"
    assert rows["on1"]["status"] == "failed"
    assert rows["on1"]["result_content"]["ename"] == "EngineError"
    assert rows["on1"]["result_content"]["evalue"] == "engine 1 died"
