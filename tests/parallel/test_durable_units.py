"""The pure parts of durable results: the engine's controller watch, its record window and
batch confirmations, and the task database."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from kernel.protocol import JSONDict, MalformedMessage, Message, Session
from parallel.controller._db import (
    INFLIGHT_REASON,
    QueryError,
    TaskDB,
    pack_buffers,
    unpack_buffers,
    where_clause,
)
from parallel.controller._records import Records, rows_of, split_frames
from parallel.engine._controller_watch import Action, ControllerWatch, WatchConfig
from parallel.engine._hub_link import encode_batch, window_config_from_env
from parallel.engine._record_window import QuietFlush, RecordWindow, Unacked, WindowConfig

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


# -- the record window and batch confirmations (engine's hub link, hub's Records) ------

WINDOW = WindowConfig(window=0.02, max_records=4, max_bytes=100)


def test_the_window_opens_at_the_first_record_and_sends_once_it_passed() -> None:
    window = RecordWindow(WINDOW)
    assert window.due(1.0, 0, 0) == math.inf  # nothing held: sleep until the next ping
    assert window.due(1.0, 1, 10) == pytest.approx(0.02)  # opens now
    assert window.due(1.015, 2, 20) == pytest.approx(0.005)  # more records: same window
    assert window.due(1.02, 2, 20) == 0.0
    assert window.due(1.5, 2, 20) == 0.0  # late (a busy thread): at once
    window.sent()
    assert window.due(2.0, 1, 0) == pytest.approx(0.02)  # the next record opens a new one


def test_sync_records_and_full_batches_do_not_wait() -> None:
    assert RecordWindow(WINDOW).due(0.0, 1, 0, urgent=True) == 0.0
    assert RecordWindow(WINDOW).due(0.0, 4, 0) == 0.0  # max_records
    assert RecordWindow(WINDOW).due(0.0, 1, 100) == 0.0  # max_bytes
    window = RecordWindow(WINDOW)
    assert window.due(0.0, 3, 99) == pytest.approx(0.02)
    assert window.due(0.001, 0, 0) == pytest.approx(0.019)  # emptied: open until its end
    assert window.due(0.02, 0, 0) == math.inf  # then it closes
    assert window.opened is None


def test_a_window_sent_at_its_end_ticks_on_until_one_ends_empty() -> None:
    # A stream: the thread sends at each window's end, and the records that came
    # meanwhile need no wake (the thread is not idle: due is finite with nothing held).
    window = RecordWindow(WINDOW)
    assert window.due(1.0, 1, 0) == pytest.approx(0.02)  # the first record opens it
    assert window.due(1.02, 5 - 2, 0) == 0.0  # its end: send
    window.sent(1.02)  # a window's end: the next one opens now
    assert window.due(1.02, 0, 0) == pytest.approx(0.02)  # nothing held: wait for its end
    assert window.due(1.04, 2, 0) == 0.0  # two records came meanwhile: send at its end
    window.sent(1.04)
    assert window.due(1.06, 0, 0) == math.inf  # a window with nothing: closed, idle
    assert window.opened is None
    assert window.due(1.5, 1, 0) == pytest.approx(0.02)  # a record (it woke the thread)
    assert window.due(1.505, 1, 0, urgent=True) == 0.0  # asked for (quiet) or sync
    window.sent(None)  # closed at once: nothing follows such a send
    assert window.due(1.505, 0, 0) == math.inf


def test_the_main_thread_asks_for_the_batch_once_replies_stop() -> None:
    quiet = QuietFlush(quiet=0.005)
    assert quiet.replied(1.000) == 0.005  # arm a timer
    assert quiet.replied(1.003) is None  # armed already: the reply only moves ``last``
    assert quiet.fired(1.005) == pytest.approx(0.003)  # a reply 2 ms ago: look again
    assert quiet.fired(1.008) is None  # quiet for 5 ms: send now; disarmed
    assert (quiet.armed, quiet.last) == (False, None)
    assert quiet.replied(2.0) == 0.005  # the next reply arms a new timer
    # A busy engine: replies every 3 ms keep the timer moving, no send until they stop.
    busy = QuietFlush(quiet=0.005)
    decisions = [busy.replied(0.0)]
    for i in range(1, 6):
        decisions.append(busy.replied(i * 0.003))
    assert decisions == [0.005, None, None, None, None, None]
    assert busy.fired(0.005) == pytest.approx(0.015)  # the last reply was at 0.015
    assert busy.fired(0.020) is None


def test_the_quiet_time_follows_the_reply_rate_up_to_its_longest() -> None:
    quiet = QuietFlush(quiet=0.025, longest=0.1)
    assert quiet.replied(0.0) == 0.025  # the first reply: a lone one, the least quiet time
    assert quiet.replied(0.030) is None  # armed; a stream 30 ms apart: quiet for 60 ms
    assert quiet.wait == pytest.approx(0.06)
    assert quiet.fired(0.025) == pytest.approx(0.065)  # the last reply was at 0.030
    assert quiet.replied(0.060) is None
    assert quiet.fired(0.090) == pytest.approx(0.03)
    assert quiet.fired(0.120) is None  # 60 ms without a reply: send now
    assert quiet.replied(0.130) == pytest.approx(0.1)  # 70 ms apart: 140 ms, capped
    assert quiet.fired(0.230) is None
    assert quiet.replied(0.235) == pytest.approx(0.025)  # 105 ms apart: a lone reply
    assert quiet.replied(0.240) is None
    assert quiet.wait == pytest.approx(0.025)  # 5 ms apart: the least quiet time
    assert quiet.fired(0.260) == pytest.approx(0.005)
    assert quiet.fired(0.265) is None
    assert quiet.replied(1.0) == pytest.approx(0.025)  # after 760 ms: a lone reply


def test_the_longest_quiet_time_is_the_window_or_four_quiet_times() -> None:
    assert QuietFlush.for_window(WindowConfig(window=0.1, quiet=0.025)).longest == 0.1
    assert QuietFlush.for_window(WindowConfig(window=0.05, quiet=0.025)).longest == 0.05
    assert QuietFlush.for_window(WindowConfig(window=30.0, quiet=1.0)).longest == 4.0
    assert QuietFlush.for_window(WindowConfig(window=0.01, quiet=0.025)).longest == 0.025
    assert QuietFlush(quiet=0.025).longest == 0.025  # alone: a fixed quiet time


def _asks(quiet: QuietFlush, replies: list[float]) -> list[float]:
    """When the engine's loop asks for the batch: its one timer driven like the loop."""
    asks: list[float] = []
    timer: float | None = None
    for now in [*replies, math.inf]:
        while timer is not None and timer <= now:
            delay = quiet.fired(timer)
            asks += [timer] if delay is None else []
            timer = None if delay is None else timer + delay
        if now < math.inf:
            delay = quiet.replied(now)
            timer = now + delay if delay is not None else timer
    return [round(t, 6) for t in asks]


def test_a_steady_stream_slower_than_quiet_leaves_its_records_to_the_window() -> None:
    # 16 engines on 2 cores answer a broadcast in a loop about every 30 ms: with a fixed
    # 25 ms quiet time each reply was asked for alone (a wake and a batch per task).
    replies = [i * 0.030 for i in range(10)]
    assert _asks(QuietFlush(quiet=0.025), replies) == [round(t + 0.025, 6) for t in replies]
    # A window longer than the longest quiet time (4 x 1 s here): the quiet time follows
    # the stream's rate; the first reply is a lone one (no rate yet), then once, two
    # gaps after the last.
    slow = [i * 1.2 for i in range(10)]
    following = QuietFlush.for_window(WindowConfig(window=30.0, quiet=1.0))
    assert not following.covered
    assert _asks(following, slow) == [1.0, 13.2]
    # The default window (100 ms, no longer than the longest quiet time) bounds a
    # stream's records by itself: only the lone first reply arms a timer, at its time.
    default = QuietFlush.for_window(WindowConfig(window=0.1, quiet=0.025))
    assert default.covered
    assert _asks(default, replies) == [0.025]
    # Replies 200 ms apart are lone ones: each asked for after 25 ms, as before.
    lone = [i * 0.2 for i in range(3)]
    assert _asks(QuietFlush.for_window(WindowConfig()), lone) == [0.025, 0.225, 0.425]


def test_a_covered_stream_arms_no_timer_and_moves_none() -> None:
    # 16 engines answering a broadcast in a loop: a timer per stream reply woke the
    # engine's main thread about every second reply, for records the window sends anyway.
    quiet = QuietFlush.for_window(WindowConfig(window=0.1, quiet=0.025))
    assert quiet.replied(1.000) == 0.025  # lone: its records go within 25 ms
    assert quiet.replied(1.010) is None  # a stream reply: the window's end sends it
    assert quiet.replied(1.020) is None
    assert quiet.fired(1.025) is None  # the lone reply's time, unmoved: ask now
    assert not quiet.armed
    assert [quiet.replied(1.025 + 0.03 * i) for i in range(1, 6)] == [None] * 5  # no timer
    assert quiet.replied(1.3) == 0.025  # 125 ms after the last: lone again


def test_unacked_batches_are_confirmed_by_reply_or_by_the_pings_range() -> None:
    unacked: Unacked[str] = Unacked(limit=10)
    assert unacked.add(["a", "b"]) == (1, [])
    assert unacked.add(["c"]) == (2, [])
    assert unacked.add(["d"]) == (3, [])
    assert unacked.add(["e"]) == (4, [])
    assert unacked.acked(3) == ["d"]  # its own record_reply
    assert unacked.acked(3) == []  # once
    assert unacked.acked_range(2, 4) == ["c", "e"]  # a ping: the hub has 2 to 4, not 1
    assert len(unacked) == 2
    assert unacked.take_all() == [["a", "b"]]  # sent again after a re-registration
    assert unacked.take_all() == []
    assert unacked.add(["f"]) == (5, [])  # numbers go on


def test_unacked_drops_its_oldest_batches_past_the_limit() -> None:
    unacked: Unacked[int] = Unacked(limit=3)
    unacked.add([1, 2])
    unacked.add([3])
    assert unacked.add([4, 5]) == (3, [[1, 2]])
    assert unacked.add([6, 7, 8, 9]) == (4, [[3], [4, 5]])  # the newest is always kept
    assert len(unacked) == 4


def _batch(
    session: Session, seq: int, msg_ids: list[str], *, link: str = "L1", ack: bool = False
) -> Message:
    rows = [["result", m, None, None, None, None, "2026", "ok"] for m in msg_ids]
    frames = [b for _ in msg_ids for b in (b"{}", b"{}", pack_buffers([]))]
    content = {"uuid": "u0", "id": 0, "link": link, "seq": seq, "ack": ack, "rows": rows}
    content["sizes"] = [len(f) for f in frames]
    return session.message("record_request", content, buffers=[b"".join(frames)])


def test_the_hub_answers_only_batches_that_ask_and_tells_pings_the_range_it_has() -> None:
    session = Session(b"key")
    records = Records(TaskDB(None))
    assert records.committed("u0", "L1") is None
    assert records.answer(_batch(session, 1, ["m1"])) is None  # no reply: the ping says it
    assert records.answer(_batch(session, 2, ["m2"])) is None
    assert records.unflushed
    assert records.committed("u0", "L1") is None  # stored, not yet committed: not said
    records.flush()
    assert records.committed("u0", "L1") == [1, 2]
    assert records.committed("u0", "other link") is None  # a replacement numbers anew
    reply = records.answer(_batch(session, 3, ["m3"], ack=True))
    assert reply is not None
    assert reply.content == {"status": "ok"}
    assert records.committed("u0", "L1") == [1, 3]  # committed before its reply
    assert records.answer(_batch(session, 5, ["m5"])) is None  # 4 never came: a gap
    records.flush()
    assert records.committed("u0", "L1") == [5, 5]
    assert records.answer(_batch(session, 1, ["m1"], link="L2")) is None  # a new link
    records.flush()
    assert records.committed("u0", "L1") is None
    assert records.committed("u0", "L2") == [1, 1]
    stored = records.db.query({}, ["msg_id", "status"])
    assert [(r["msg_id"], r["status"]) for r in stored] == [
        ("m1", "ok"), ("m2", "ok"), ("m3", "ok"), ("m5", "ok")
    ]  # fmt: skip


def test_batches_that_ask_no_reply_are_committed_together_and_only_then_confirmed(
    tmp_path: Path,
) -> None:
    session = Session(b"key")
    path = tmp_path / "records.db"
    records = Records(TaskDB(path))
    reader = TaskDB(path)  # another connection sees only what is committed

    def committed_ids() -> list[str]:
        return [r["msg_id"] for r in reader.query({}, ["msg_id"])]

    records.answer(_batch(session, 1, ["m1"]))
    records.answer(_batch(session, 2, ["m2", "m3"]))
    assert committed_ids() == []
    # What a client is shown is committed first: it may outlive the hub's next crash.
    query = session.message("db_request", {"query": {}, "keys": ["msg_id"]})
    reply = records.answer(query)
    assert reply is not None
    assert [r["msg_id"] for r in reply.content["records"]] == ["m1", "m2", "m3"]
    assert committed_ids() == ["m1", "m2", "m3"]
    assert records.committed("u0", "L1") == [1, 2]
    # A batch SQLite refuses (a value it cannot bind) leaves the others stored.
    bad = _batch(session, 3, ["m4"])
    bad.content["rows"][0][6] = "\ud800"  # a lone surrogate: not UTF-8, not storable
    with pytest.raises(MalformedMessage, match="cannot be stored"):
        records.answer(bad)
    records.flush()
    assert committed_ids() == ["m1", "m2", "m3"]
    # A write of another kind (an engine lost) commits what waits first, then itself.
    records.answer(_batch(session, 3, ["m5"]))
    records.engine_lost("u0", "gone")
    assert committed_ids() == ["m1", "m2", "m3", "m5"]
    assert records.unflushed  # batch 3's confirmation waits for the flush
    records.flush()
    assert records.committed("u0", "L1") == [1, 3]
    records.answer(_batch(session, 4, ["m6"]))
    records.db.close()  # a clean stop commits too
    assert committed_ids()[-1] == "m6"
    reader.close()


def test_a_batch_travels_as_rows_and_is_stored_as_sent() -> None:
    header = {"msg_id": "m1", "msg_type": "apply_request", "session": "s1", "date": "d0"}
    start: JSONDict = {
        "kind": "task", "msg_id": "m1", "task_id": "t1", "submitted": "d0",
        "client_uuid": "s1", "header": header, "metadata": {"task_id": "t1"},
        "content": {}, "started": "d1",
    }  # fmt: skip
    reply: JSONDict = {
        "kind": "result", "msg_id": "m1", "completed": "d2", "status": "error",
        "result_content": {"status": "error", "ename": "ValueError"},
        "result_metadata": {"engine": "e0"},
    }  # fmt: skip
    other: JSONDict = {**start, "msg_id": "m2", "task_id": None, "header": {"a": "é"}}
    batch = [(start, [b"call", memoryview(b"args")], None), (other, [], None)]
    batch.append((reply, [b"value"], None))
    rows, frames = encode_batch(batch)
    # One row per task: m1's start and reply together, m2 only started.
    assert rows == [
        ["full", "m1", "t1", "d0", "s1", "d1", "d2", "error"],
        ["task", "m2", None, "d0", "s1", "d1", None, None],
    ]
    assert len(frames) == 7 + 4
    assert unpack_buffers(frames[3]) == [b"call", b"args"]  # packed as the database keeps
    full, tasks, results = rows_of(rows, frames, "u0", 0, "now")
    assert (len(full), len(tasks), results) == (1, 1, [])
    db = TaskDB(None)
    db.add_rows(full, tasks, results)
    got = {r["msg_id"]: r for r in db.query({}, None)}
    assert got["m1"]["header"] == header
    assert got["m1"]["result_content"]["ename"] == "ValueError"
    assert (got["m1"]["status"], got["m1"]["task_id"], got["m1"]["engine_uuid"]) == (
        "error", "t1", "u0"
    )  # fmt: skip
    assert got["m2"]["header"] == {"a": "é"}
    assert got["m2"]["status"] == "pending"
    found = db.find(["m1"], ["buffers", "result_buffers"])["m1"]
    assert (found["buffers"], found["result_buffers"]) == ([b"call", b"args"], [b"value"])
    # A result alone (its start went in an earlier batch) completes the row.
    rows, frames = encode_batch([({**reply, "msg_id": "m2", "status": "ok"}, [], None)])
    assert rows == [["result", "m2", None, None, None, None, "d2", "ok"]]
    db.add_rows(*rows_of(rows, frames, "u0", 0, "later"))
    assert db.query({"msg_id": "m2"}, ["status", "started"]) == [
        {"msg_id": "m2", "status": "ok", "started": "d1"}
    ]


@pytest.mark.parametrize(
    ("rows", "frames", "error"),
    [
        ([["full", "m"]], [], "a record row is"),
        ([["nope", "m", None, None, None, None, None, None]], [], "kind 'nope'"),
        ([["task", "m", {"a": 1}, None, None, None, None, None]], [], "non-text fields"),
        ([["task", "m", None, None, None, None, None, None]], [b"{}"], "more than the 1"),
        ([["result", "m", None, None, None, None, None, None]], [b"\xff", b"", b""], "UTF-8"),
        ([], [b"stray"], "the rows take 0 frames, 1 came"),
    ],
)
def test_a_malformed_batch_is_one_clear_error(
    rows: list[Any], frames: list[bytes], error: str
) -> None:
    with pytest.raises(MalformedMessage, match=error):
        rows_of(rows, frames, "u0", 0, "now")


def test_a_batch_is_one_buffer_cut_by_its_sizes() -> None:
    assert [bytes(f) for f in split_frames([b"abcdef"], [1, 0, 5])] == [b"a", b"", b"bcdef"]
    assert split_frames([b""], []) == []
    for buffers, sizes in [([b"abc"], [1, 1]), ([b"abc"], [4]), ([b"abc"], [-1, 4])]:
        with pytest.raises(MalformedMessage, match="do not add up to the 3 bytes"):
            split_frames(buffers, sizes)
    for buffers, sizes in [([b"a", b"b"], [1, 1]), ([b"ab"], None)]:
        with pytest.raises(MalformedMessage, match="one buffer and the sizes"):
            split_frames(buffers, sizes)


def test_the_window_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("LOOM_RECORD_WINDOW", raising=False)
    monkeypatch.delenv("LOOM_RECORD_QUIET", raising=False)
    assert window_config_from_env() == WindowConfig(window=0.1, quiet=0.025)
    monkeypatch.setenv("LOOM_RECORD_WINDOW", "0.5")
    monkeypatch.setenv("LOOM_RECORD_QUIET", "0")
    assert window_config_from_env() == WindowConfig(window=0.5, quiet=0.0)
    for bad in ("soon", "-1", "nan", "601"):
        monkeypatch.setenv("LOOM_RECORD_WINDOW", bad)
        caplog.clear()
        assert window_config_from_env().window == 0.1
        assert caplog.messages == [
            f"LOOM_RECORD_WINDOW={bad!r} is not seconds from 0 to 600; using 0.1"
        ]
