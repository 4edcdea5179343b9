"""ipyparallel's less common client surface, where Loom's answers go beyond the shared
scenarios of ``test_ipyparallel_compat``: bad arguments, pending tasks, maps with failed
chunks, an executor after ``shutdown``, the metadata of tasks not finished."""

from __future__ import annotations

import datetime
import itertools
import warnings
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED
from typing import Any

import pytest
from _cluster_support import main_function, module_cluster

import parallel
from parallel import Client, Reference, require

pytestmark = pytest.mark.timeout(120)


def L(source: str) -> Any:
    return main_function(f"f = {source}", "f")


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with module_cluster(tmp_path_factory, "extras", 2) as client:
        yield client


def test_bad_arguments_are_refused_before_anything_is_sent(rc: Client) -> None:
    view = rc[:]
    with pytest.raises(TypeError, match="variable name"):
        Reference("not a name")
    with pytest.raises(TypeError, match="require"):
        require(5)
    with pytest.raises(TypeError, match=r"not 5 \(int\): the client keeps no history"):
        rc.abort(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"a msg_id or an AsyncResult, not 1\.5"):
        rc.wait([1.5])  # type: ignore[list-item]
    assert rc.wait([], timeout=0)  # nothing named: nothing to wait for
    with pytest.raises(ValueError, match="dist must be 'b'"):
        view.scatter("x", [1, 2], dist="r")
    with pytest.raises(NotImplementedError, match="block=False"):
        rc.wait_for_engines(2, block=False)
    assert rc.outstanding == set()


def test_a_missing_reference_names_itself(rc: Client) -> None:
    with pytest.raises(parallel.RemoteError, match="'absent' is not defined"):
        rc[0].apply_sync(L("lambda x: x"), Reference("absent"))


def test_require_puts_objects_and_modules_in_the_engine_namespace(rc: Client) -> None:
    helper = main_function("def helper():\n    return 'helped'", "helper")
    uses = main_function("def uses():\n    return helper() + str(limit) + json.dumps(1)", "uses")
    required = require("json", helper, limit=7)(uses)
    assert required.__name__ == "uses"
    assert rc[:].apply_sync(required) == ["helped71"] * 2
    # and they stay there, as ipyparallel's require leaves them
    assert (
        rc[:].apply_sync(L("lambda: (helper(), limit, json.__name__)"))
        == [("helped", 7, "json")] * 2
    )
    needs_missing = require("no_such_module_here")(L("lambda: 1"))
    with pytest.raises(parallel.RemoteError, match="no_such_module_here"):
        rc.load_balanced_view().apply_sync(needs_missing)


def test_get_variants(rc: Client) -> None:
    lview = rc.load_balanced_view()
    chunks = lview.map_async(L("lambda x: 1 / x"), [1, 2, 0, 4], chunksize=2)
    mixed = chunks.get(timeout=30, return_exceptions=True)
    assert mixed[:2] == [1.0, 0.5]
    assert isinstance(mixed[2], parallel.RemoteError)  # the failed chunk [0, 4], once
    assert len(mixed) == 3
    ok = rc[:].apply_async(L("lambda: 2"))
    assert ok.get(timeout=30, return_exceptions=True) == [2, 2]
    with pytest.raises(ValueError, match="return_when"):
        ok.get(return_when="soon")
    with pytest.warns(UserWarning, match="FIRST_COMPLETED"):
        assert ok.get(return_when=FIRST_COMPLETED) == [2, 2]
    streamed = list(lview.imap(L("lambda x: 1 / x"), [1, 0, 2], return_exceptions=True))
    assert streamed[0] == 1.0
    assert isinstance(streamed[1], parallel.RemoteError)
    assert streamed[2] == 0.5
    with pytest.raises(parallel.RemoteError):
        list(lview.imap(L("lambda x: 1 / x"), [1, 0]))


def test_metadata_of_pending_and_failed_tasks(rc: Client) -> None:
    rc[:].push({"go": False}, block=True)
    waiting = rc[0].apply_async(
        main_function("import time\ndef f():\n    while not go:\n        time.sleep(0.01)", "f")
    )
    queued = rc[0].apply_async(L("lambda: 1"))  # behind the waiting one
    assert queued.metadata["status"] is None
    assert queued.metadata["completed"] is None
    assert queued.started is None
    with pytest.raises(KeyError, match="not a metadata key"):
        queued["bogus"]
    with pytest.raises(AttributeError, match="bogus"):
        queued.bogus  # noqa: B018
    with pytest.raises(parallel.TimeoutError):
        queued.serial_time  # noqa: B018
    rc[1].execute("import signal", block=True)
    rc.send_signal(2, targets=[0])  # SIGINT: interrupts the waiting task
    with pytest.raises(parallel.RemoteError, match="KeyboardInterrupt"):
        waiting.get(timeout=30)
    assert queued.get(timeout=30) == 1
    failed = waiting.metadata
    assert failed["status"] == "error"
    assert failed["error"].ename == "KeyboardInterrupt"
    assert isinstance(failed["completed"], datetime.datetime)
    start, end = queued.metadata["submitted"], queued.metadata["received"]
    assert queued.timedelta(start, end) >= 0
    assert queued.timedelta([start, end], [end]) == (end - start).total_seconds()


def test_executor_after_shutdown_and_with_cancelled_futures(rc: Client) -> None:
    # Nothing left running from earlier tests (an imap stopped at its first error leaves
    # its other task): the balancer then puts one blocker on each engine, and ``late``
    # waits behind one of them instead of running on an engine still free.
    assert rc.wait(timeout=30)
    pool = rc.executor()
    rc[:].push({"release": False}, block=True)
    blocker = main_function(
        "import time\ndef f():\n    while not release:\n        time.sleep(0.01)", "f"
    )
    busy = [pool.submit(blocker) for _ in range(2)]
    late = pool.submit(L("lambda: 'late'"))
    other = rc[0].apply_async(L("lambda: 'other'"))  # the client's, not the executor's
    rc[:].execute("release = True", block=False)  # engines are busy: queued behind
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(L("lambda: 1"))
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.map(L("lambda x: x"), [1])
    rc.send_signal(2)  # ends the blockers
    for future in busy:
        future.exception(timeout=30)
    with pytest.raises(parallel.RemoteError, match="TaskAborted"):
        late.result(timeout=30)
    assert other.get(timeout=30) == "other"  # cancel_futures left it alone
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(rc[:].executor.map(L("lambda x: x"), {3})) == [3]


def test_view_activate_outside_ipython_warns(rc: Client) -> None:
    with pytest.warns(RuntimeWarning, match="%px magics need IPython"):
        rc[:].activate("9")


def test_imap_reads_an_endless_generator_only_as_tasks_finish(rc: Client) -> None:
    read: list[int] = []

    def numbers() -> Iterator[int]:
        for number in itertools.count():
            read.append(number)
            yield number

    lview = rc.load_balanced_view()
    doubled = lview.imap(L("lambda x: x * 2"), numbers(), chunksize=2, max_outstanding=3)
    assert read == []  # nothing read or sent before the first result is asked for
    assert [next(doubled) for _ in range(5)] == [0, 2, 4, 6, 8]
    # Chunks 0 and 1 were yielded whole, each replaced by a new one; chunk 2 is being
    # yielded, chunks 3 and 4 are out: 5 chunks of 2 read, no more.
    assert read == list(range(10))
    doubled.close()
    with pytest.raises(ValueError, match="max_outstanding"):
        lview.imap(L("lambda x: x"), [1], max_outstanding="all")
    with pytest.raises(TypeError, match="needs iterables, not int"):
        lview.imap(L("lambda x: x"), 5)


def test_display_outputs_by_order_and_results_only(
    rc: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    shows = rc[:].execute("print('p'); display('x'); display('y'); 7", silent=False)
    shows.get(timeout=30)
    capsys.readouterr()
    shows.display_outputs(groupby="order")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "[stdout:0] p", "[stdout:1] p",
        "[output:0] 'x'", "[output:1] 'x'",
        "[output:0] 'y'", "[output:1] 'y'",
        "[output:0] 7", "[output:1] 7",
    ]  # fmt: skip
    shows.display_outputs(result_only=True)
    assert capsys.readouterr().out.splitlines() == ["[output:0] 7", "[output:1] 7"]
    with pytest.raises(ValueError, match="groupby"):
        shows.display_outputs(groupby="size")


def test_queue_status_counts_queued_running_and_unassigned_tasks(rc: Client) -> None:
    rc.wait(timeout=30)
    idle = rc.queue_status()
    assert set(idle) == {0, 1, "unassigned"}
    assert [idle[e]["queue"] for e in (0, 1)] == [0, 0]
    done_before = idle[0]["completed"]
    blocker = main_function(
        "import time\ndef blocker():\n    while True:\n        time.sleep(0.01)", "blocker"
    )
    blocked = rc[:].apply_async(blocker)
    behind = rc[0].apply_async(L("lambda: 'behind'"))
    # With a timeout, at most 2 tasks are queued on an engine, however fast it has been.
    lview = rc.load_balanced_view(timeout=60)
    balanced = [lview.apply_async(L("lambda: 'lb'")) for _ in range(6)]
    status = rc.queue_status()
    # 2 load-balanced tasks go to each engine (its queue limit), 2 wait here.
    assert status["unassigned"] == 2
    assert [status[e]["tasks"] for e in (0, 1)] == [2, 2]
    assert [status[e]["queue"] for e in (0, 1)] == [4, 3]
    one = rc.queue_status(0, verbose=True)
    assert {blocked.msg_ids[0], behind.msg_ids[0]} <= set(one["queue"])
    assert isinstance(one["completed"], list)
    assert rc[1].queue_status()["tasks"] == 2
    rc.send_signal(2)  # the blockers end (KeyboardInterrupt); the rest runs
    assert behind.get(timeout=30) == "behind"
    assert [r.get(timeout=30) for r in balanced] == ["lb"] * 6
    assert rc.wait(blocked, timeout=30)
    assert behind.metadata["status"] == "ok"  # its records are in (metadata waits for them)
    assert [md["status"] for md in blocked.metadata] == ["error", "error"]
    after = rc.queue_status()
    assert [after[e]["queue"] for e in (0, 1)] == [0, 0]
    assert after["unassigned"] == 0
    assert after[0]["completed"] >= done_before + 2  # its blocker and `behind`, recorded


def test_wait_covers_load_balanced_tasks_sent_and_waiting(rc: Client) -> None:
    rc[:].push({"hold": 0.2}, block=True)
    lview = rc.load_balanced_view()
    slow = L("lambda: __import__('time').sleep(hold)")
    results = [lview.apply_async(slow) for _ in range(8)]  # 4 go out, 4 wait here
    assert set(results[-1].msg_ids) <= rc.outstanding
    assert rc.wait(results[-1:], timeout=30)
    assert results[-1].done()
    results = [lview.apply_async(slow) for _ in range(8)]
    assert rc.wait(timeout=30)  # everything outstanding, the waiting ones too
    assert all(r.done() for r in results)
