"""One set of scenarios, run with ``import ipyparallel as ipp`` and ``import parallel as ipp``.

Each scenario uses only ipyparallel's public surface; passing with both modules is what
"change the import and the code keeps working" means. The real ipyparallel (installed as
a test dependency) runs its own controller and engines.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from _cluster_support import main_function

ENGINES = 2


def L(source: str) -> Any:
    """A lambda defined in ``__main__``, as one typed in a script or notebook."""
    return main_function(f"f = {source}", "f")


@pytest.fixture(scope="module", params=["ipyparallel", "parallel"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ModuleType, Any]]:
    # Importing ipyparallel's client replaces jupyter_client.session.extract_dates with a
    # no-op, for the whole process: put it back afterwards, or later tests see str dates.
    import jupyter_client.session

    extract_dates = jupyter_client.session.extract_dates
    ipp = importlib.import_module(request.param)
    home = tmp_path_factory.mktemp(request.param)
    saved = {k: os.environ.get(k) for k in ("JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "HOME")}
    os.environ["JUPYTER_RUNTIME_DIR"] = str(home / "runtime")
    os.environ["IPYTHONDIR"] = str(home / "ipython")
    pool = ipp.Cluster(n=ENGINES)
    try:
        rc = pool.start_and_connect_sync()
        rc.wait_for_engines(ENGINES, timeout=60)
        yield ipp, rc
        rc.close()
    finally:
        pool.stop_cluster_sync()
        jupyter_client.session.extract_dates = extract_dates
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_ids_views_and_apply(cluster: tuple[ModuleType, Any]) -> None:
    ipp, rc = cluster
    assert rc.ids == list(range(ENGINES))
    view = rc[:]
    assert view.apply_sync(L("lambda x: x + 1"), 1) == [2] * ENGINES
    assert rc[0].apply_sync(L("lambda: 'one'")) == "one"
    result = view.apply_async(L("lambda: 3"))
    assert isinstance(result, ipp.AsyncResult)
    assert result.get(timeout=30) == [3] * ENGINES
    assert result.ready()
    assert result.successful()


def test_push_pull_execute_and_dict_access(cluster: tuple[ModuleType, Any]) -> None:
    _, rc = cluster
    view = rc[:]
    view.block = True
    view.push({"shared": 7})
    assert view.pull("shared") == [7] * ENGINES
    view.execute("doubled = shared * 2")
    assert view["doubled"] == [14] * ENGINES
    view["named"] = "x"
    assert view.pull(["shared", "named"]) == [[7, "x"]] * ENGINES
    reads = main_function("def reads():\n    return shared + doubled", "reads")
    assert view.apply(reads) == [21] * ENGINES


def test_scatter_gather_and_map(cluster: tuple[ModuleType, Any]) -> None:
    _, rc = cluster
    view = rc[:]
    view.scatter("part", list(range(10)), block=True)
    assert view.gather("part", block=True) == list(range(10))
    assert view.map_sync(L("lambda x: x * 10"), range(6)) == [0, 10, 20, 30, 40, 50]
    lview = rc.load_balanced_view()
    assert lview.map_sync(L("lambda x: x - 1"), range(8)) == list(range(-1, 7))
    assert lview.map_sync(L("lambda x: x"), range(9), chunksize=4) == list(range(9))
    assert lview.apply_sync(L("lambda: 'lb'")) == "lb"


def test_remote_errors(cluster: tuple[ModuleType, Any]) -> None:
    ipp, rc = cluster
    with pytest.raises(ipp.error.RemoteError) as one:
        rc[0].apply_sync(L("lambda: 1 / 0"))
    assert one.value.ename == "ZeroDivisionError"
    with pytest.raises(ipp.error.CompositeError):
        rc[:].apply_sync(L("lambda: 1 / 0"))


def test_remote_and_parallel_decorators(cluster: tuple[ModuleType, Any]) -> None:
    _, rc = cluster
    view = rc[:]

    where = view.remote(block=True)(main_function("def where():\n    return 'e'", "where"))
    assert where() == ["e"] * ENGINES
    plus_one = view.parallel(block=True)(L("lambda x: x + 1"))
    assert list(plus_one.map(range(4))) == [1, 2, 3, 4]


def test_sync_imports_runs_imports_on_the_engines(cluster: tuple[ModuleType, Any]) -> None:
    _, rc = cluster
    view = rc[:]
    with view.sync_imports(quiet=True):
        import json  # noqa: F401
    uses_json = main_function("def uses():\n    return json.dumps([1])", "uses")
    assert view.apply_sync(uses_json) == ["[1]"] * ENGINES


def test_stdout_of_a_task(cluster: tuple[ModuleType, Any]) -> None:
    _, rc = cluster
    result = rc[0].apply_async(print, "hi")
    result.get(timeout=30)
    result.wait_for_output(timeout=30)  # ipyparallel's output may trail its result
    assert result.stdout == "hi\n"


def test_display_outputs_groups_the_streams(
    cluster: tuple[ModuleType, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _, rc = cluster
    result = rc[:].apply_async(main_function("def f():\n    print('a')\n    print('b')", "f"))
    result.get(timeout=30)
    result.wait_for_output(timeout=30)
    capsys.readouterr()
    result.display_outputs()
    by_type = "".join(f"[stdout:{i}] \na\nb\n" for i in range(ENGINES))
    assert capsys.readouterr().out == by_type
    single = rc[0].apply_async(print, "one")
    single.get(timeout=30)
    single.wait_for_output(timeout=30)
    capsys.readouterr()
    single.display_outputs(groupby="engine")
    assert capsys.readouterr().out == "one\n"  # one task: no heading


def test_temp_flags_and_wait(cluster: tuple[ModuleType, Any]) -> None:
    _, rc = cluster
    view = rc[:]
    with view.temp_flags(block=True):
        assert view.apply(L("lambda: 5")) == [5] * ENGINES
    results = [view.apply_async(L("lambda: 1")) for _ in range(3)]
    assert rc.wait(results, timeout=30)
    assert all(r.ready() for r in results)


def test_results_by_engine_send_state_and_wall_time(cluster: tuple[ModuleType, Any]) -> None:
    _, rc = cluster
    result = rc[:].apply_async(os.getpid)
    result.wait_for_send(timeout=30)
    assert result.sent
    by_engine = result.get_dict(timeout=30)
    assert sorted(by_engine) == rc.ids
    assert len(set(by_engine.values())) == ENGINES  # each engine's own process
    assert rc[1].apply_async(L("lambda: 5")).get_dict(timeout=30) == {1: 5}
    assert result.wall_time > 0


def test_view_aliases_serializer_switches_and_housekeeping(cluster: tuple[ModuleType, Any]) -> None:
    _, rc = cluster
    view = rc[:]
    # cloudpickle is what Loom always uses; ipyparallel switches to it: either way the
    # call answers like an apply and lambdas travel afterwards.
    assert view.use_cloudpickle().get(timeout=30) == [None] * ENGINES
    assert view.apply_sync(L("lambda: 'after'")) == ["after"] * ENGINES
    # Back to ipyparallel's default for the tests after this one (its `require` binds
    # modules into a function's globals only with its own pickling).
    assert view.use_pickle().get(timeout=30) == [None] * ENGINES
    view.update({"updated": 3})
    assert view.get("updated") == [3] * ENGINES
    pending = view.apply_async(L("lambda: 'waited'"))
    assert view.wait([pending], timeout=30)
    assert pending.get(timeout=0) == ["waited"] * ENGINES


def test_load_balanced_remote_and_parallel_decorators(cluster: tuple[ModuleType, Any]) -> None:
    _, rc = cluster
    lview = rc.load_balanced_view()
    double = lview.remote(block=True)(L("lambda x: x * 2"))
    assert double(4) == 8
    plus_one = lview.parallel(block=True)(L("lambda x: x + 1"))
    assert list(plus_one.map(range(3))) == [1, 2, 3]
    assert lview.wait(timeout=30)


def test_executor_runs_submit_and_map_on_the_engines(cluster: tuple[ModuleType, Any]) -> None:
    ipp, rc = cluster
    with rc.executor() as pool:
        assert isinstance(pool, ipp.ViewExecutor)
        assert pool.submit(L("lambda x: x + 1"), 1).result(timeout=30) == 2
        assert list(pool.map(L("lambda x: x * x"), range(5))) == [0, 1, 4, 9, 16]
    assert list(rc[:].executor.map(L("lambda x: -x"), range(3))) == [0, -1, -2]


def test_load_balanced_imap_reads_a_generator(cluster: tuple[ModuleType, Any]) -> None:
    _, rc = cluster
    lview = rc.load_balanced_view()
    squares = lview.imap(L("lambda x: x * x"), (i for i in range(6)), max_outstanding=2)
    assert list(squares) == [0, 1, 4, 9, 16, 25]
    unordered = lview.imap(L("lambda x: x"), iter(range(4)), ordered=False)
    assert sorted(unordered) == [0, 1, 2, 3]


def test_reference_and_require(cluster: tuple[ModuleType, Any]) -> None:
    ipp, rc = cluster
    view = rc[:]
    view.push({"here": 10}, block=True)
    add = L("lambda x, y=0: x + y")
    assert view.apply_sync(add, ipp.Reference("here"), y=ipp.Reference("here")) == [20] * ENGINES
    lview = rc.load_balanced_view()
    assert lview.apply_sync(add, ipp.Reference("here"), 1) == 11
    dumps = main_function(
        "def dumps():\n    return json.dumps([base64.b64encode(b'x').decode()])", "dumps"
    )
    assert lview.apply_sync(ipp.require("json", "base64")(dumps)) == '["eA=="]'


def test_get_with_return_exceptions_and_first_exception(cluster: tuple[ModuleType, Any]) -> None:
    ipp, rc = cluster
    failed = rc[0].apply_async(L("lambda: 1 / 0"))
    error = failed.get(timeout=30, return_exceptions=True)
    assert isinstance(error, ipp.error.RemoteError)
    assert error.ename == "ZeroDivisionError"
    view = rc[:]
    view.scatter("me", list(range(ENGINES)), flatten=True, block=True)
    assert view["me"] == list(range(ENGINES))
    slow_or_fail = main_function(
        "import time\ndef f():\n    if me == 0:\n        1 / 0\n    time.sleep(3)", "f"
    )
    result = view.apply_async(slow_or_fail)
    with pytest.raises(ipp.error.RemoteError):
        result.get(timeout=30, return_when=ipp.FIRST_EXCEPTION)
    if ipp.__name__ == "parallel":  # ipyparallel may call the whole result failed by then
        assert not result.ready()  # raised without waiting for the sleeping engine
    assert result.wait(timeout=30)


def test_metadata_of_a_finished_task(cluster: tuple[ModuleType, Any]) -> None:
    _, rc = cluster
    result = rc[1].apply_async(print, "meta")
    assert result.r is None
    result.wait_for_output(timeout=30)
    metadata = result.metadata
    assert metadata["engine_id"] == 1
    assert metadata["status"] == "ok"
    assert metadata["started"] <= metadata["completed"]
    assert metadata["stdout"] == "meta\n"
    assert result.started == metadata["started"]
    assert result["engine_id"] == 1
    assert 0 <= result.serial_time < 30
    assert rc[:].apply_async(L("lambda: 4")).result_dict == {i: 4 for i in range(ENGINES)}


def test_views_len_imap_clear_and_arrays(cluster: tuple[ModuleType, Any]) -> None:
    import numpy as np

    ipp, rc = cluster
    view = rc.direct_view(block=True)
    assert view.block is True
    assert len(view) == ENGINES
    assert len(rc.load_balanced_view()) == ENGINES
    assert list(view.imap(L("lambda x: x + 10"), range(4))) == [10, 11, 12, 13]
    view.scatter("arr", np.arange(6))
    assert all(isinstance(part, np.ndarray) for part in view["arr"])
    gathered = view.gather("arr")
    assert isinstance(gathered, np.ndarray)
    assert gathered.tolist() == list(range(6))
    view["doomed"] = 1
    view.clear()
    with pytest.raises(ipp.error.RemoteError, match="doomed"):
        view["doomed"]


def test_client_calls_take_ipyparallels_arguments(
    cluster: tuple[ModuleType, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, rc = cluster
    # ipyparallel's wait_interactive draws a tqdm bar, whose monitor thread would outlive
    # the test (later tests check that no thread is left); without it tqdm starts none.
    import tqdm.std  # ipyparallel's dependency

    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)
    result = rc[:].apply_async(L("lambda: 'kept'"))
    assert rc.get_result(result.msg_ids, block=True).get(timeout=30) == ["kept"] * ENGINES
    one = rc[0].apply_async(L("lambda: 'one'"))
    assert rc.get_result(one, block=True).get(timeout=30) == "one"
    rc.wait_interactive(result, interval=0.1, timeout=30)
    status = rc.result_status(result.msg_ids, status_only=False)
    assert sorted(status["completed"]) == sorted(result.msg_ids)
    assert [status[m] for m in result.msg_ids] == ["kept"] * ENGINES
    rc.abort(targets=[0], block=False)  # nothing outstanding there: a no-op
    with pytest.raises(NotImplementedError):
        rc.shutdown(restart=True)


def test_queue_status_when_idle(cluster: tuple[ModuleType, Any]) -> None:
    _, rc = cluster
    done = rc[:].apply_async(L("lambda: 0"))
    assert rc.wait(timeout=30)
    assert [md["status"] for md in done.metadata] == ["ok"] * ENGINES  # recorded (Loom: waits)
    status = rc.queue_status()
    assert set(status) == {*rc.ids, "unassigned"}
    assert status["unassigned"] == 0
    for engine_id in rc.ids:
        assert status[engine_id]["queue"] == 0
        assert status[engine_id]["completed"] >= 1
        assert status[engine_id]["tasks"] == 0
    one = rc.queue_status(0, verbose=True)
    assert set(one) == {"queue", "completed", "tasks"}
    assert isinstance(one["completed"], list)
    assert one["queue"] == []
