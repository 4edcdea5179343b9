"""End to end: a controller and engines as processes, driven by the real Client."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _cluster_support import isolate, main_function, running_cluster

import parallel as ipp

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def test_a_cluster_registers_its_engines_and_applies_on_each() -> None:
    with running_cluster(2) as (cluster, rc):
        assert rc.ids == [0, 1]
        assert cluster.cluster_file is not None
        assert cluster.cluster_file.stat().st_mode & 0o777 == 0o600
        view = rc[:]
        assert view.apply_sync(lambda x, y=0: x * 2 + y, 20, y=2) == [42, 42]
        pids = view.apply_sync(os.getpid)
        assert len(set(pids)) == 2
        assert os.getpid() not in pids
        single = rc[1].apply_async(os.getpid)
        assert single.get(timeout=30) == pids[1]
        assert single.engine_id == 1
        assert rc[[1, 0]].apply_sync(os.getpid) == [pids[1], pids[0]]
    assert not cluster.cluster_file.exists()  # removed on stop


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_a_clusters_sockets_are_private_to_its_user(transport: str) -> None:
    with running_cluster(1, transport=transport) as (_, rc):
        info = rc.info
        assert info.transport == transport
        if transport == "ipc":
            directory = Path(info.ip)
            assert directory.stat().st_mode & 0o777 == 0o700
            assert (directory / "hub").is_socket()
            assert rc._records[0].address.startswith(f"{directory}/e-")
        else:
            assert info.ip == "127.0.0.1"
        assert rc[0].apply_sync(lambda: bytes(range(256)) * 8) == bytes(range(256)) * 8
    if transport == "ipc":
        assert not directory.exists()  # removed with the cluster


def test_push_pull_execute_scatter_gather_and_map_share_the_engines_namespaces() -> None:
    with running_cluster(2) as (_, rc):
        view = rc[:]
        view.block = True
        view.push({"a": 5})
        assert view.pull("a") == [5, 5]
        assert rc[0].pull("a", block=True) == 5
        view.execute("b = a * 3")
        assert view.pull(["a", "b"]) == [[5, 15], [5, 15]]
        view["c"] = "see"
        assert view["c"] == ["see", "see"]
        view.scatter("part", list(range(7)))
        assert view.pull("part") == [[0, 1, 2, 3], [4, 5, 6]]
        assert view.gather("part") == list(range(7))
        assert view.map(lambda x: x * x, range(9)) == [x * x for x in range(9)]
        assert view.map(lambda x, y: x + y, [1, 2, 3], [10, 20, 30]) == [11, 22, 33]
        reads_a = main_function("def reads_a(k):\n    return a * k + b", "reads_a")
        assert view.apply(reads_a, 2) == [25, 25]


def test_functions_from_main_see_the_engine_namespace_and_bring_their_helpers() -> None:
    source = """
    def helper(x):
        return x + 1

    def uses_helper_and_engine_name():
        return helper(engine_value)
    """
    fn = main_function(source, "uses_helper_and_engine_name")
    with running_cluster(1) as (_, rc):
        rc[0].execute("engine_value = 41", block=True)
        assert rc[0].apply_sync(fn) == 42
        # The helper was added to the engine's namespace; the engine's names were kept.
        assert rc[0].apply_sync(main_function("def f():\n    return helper(0)", "f")) == 1


def test_remote_errors_carry_name_value_engine_and_traceback() -> None:
    fails = main_function("def fails(x):\n    return 1 / x", "fails")
    with running_cluster(2) as (_, rc):
        with pytest.raises(ipp.RemoteError) as single:
            rc[1].apply_sync(fails, 0)
        error = single.value
        assert (error.ename, error.evalue, error.engine_id) == (
            "ZeroDivisionError",
            "division by zero",
            1,
        )
        assert "in fails" in ANSI.sub("", error.traceback)
        assert not isinstance(error, ipp.CompositeError)
        with pytest.raises(ipp.CompositeError) as many:
            rc[:].apply_sync(fails, 0)
        assert [e.engine_id for e in many.value.elist] == [0, 1]
        assert "ZeroDivisionError" in str(many.value)
        assert rc[:].apply_sync(fails, 2) == [0.5, 0.5]  # the engines live on


def test_stdout_and_stderr_are_captured_per_task() -> None:
    speaks = main_function(
        "import sys\ndef speaks(x):\n    print('out', x)\n    print('err', file=sys.stderr)\n",
        "speaks",
    )
    with running_cluster(2) as (_, rc):
        result = rc[:].apply_async(speaks, 7)
        assert result.get(timeout=30) == [None, None]
        assert result.stdout == ["out 7\n", "out 7\n"]
        assert result.stderr == ["err\n", "err\n"]
        assert result.successful()
        assert result.elapsed > 0


def test_an_unpicklable_argument_fails_before_anything_is_sent() -> None:
    with running_cluster(1) as (_, rc):
        lock = __import__("threading").Lock()
        before = set(rc.outstanding)
        with pytest.raises(ipp.SerializationError, match="lock"):
            rc[0].apply_async(lambda x: x, lock)
        # push names the name whose value does not pickle, and says it was push()'s.
        with pytest.raises(
            ipp.SerializationError,
            match=r"argument 0 of push\(\) \(its item 'held': a _thread\.lock\)",
        ):
            rc[0].push({"fine": 1, "held": lock})
        assert rc.outstanding == before
        assert rc[0].apply_sync(lambda: "still fine") == "still fine"


def test_an_engine_without_the_tasks_module_answers_with_its_name_and_lives_on(
    tmp_path: Path,
) -> None:
    module = tmp_path / "only_here_module.py"
    module.write_text("def seven():\n    return 7\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import only_here_module  # type: ignore[import-not-found]

        with running_cluster(1) as (_, rc):
            with pytest.raises(ipp.RemoteError, match="only_here_module"):
                rc[0].apply_sync(only_here_module.seven)
            assert rc[0].apply_sync(lambda: 8) == 8
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("only_here_module", None)


def test_a_killed_engine_fails_its_task_with_engine_error_and_leaves_the_rest() -> None:
    with running_cluster(2, restart_engines=False) as (_, rc):
        pid = rc[1].apply_sync(os.getpid)
        long = rc[1].apply_async(time.sleep, 60)
        assert not long.ready()
        started = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ipp.EngineError, match=r"not restarted: restarts are off") as lost:
            long.get(timeout=20)
        assert time.monotonic() - started < 5
        assert lost.value.engine_id == 1
        assert rc.ids == [0]
        with pytest.raises(ipp.NoEnginesRegistered, match="engine 1 is not registered"):
            rc[1].apply_sync(os.getpid)
        assert rc[:].apply_sync(lambda: 1) == [1]


def test_get_with_a_timeout_raises_timeout_error_and_the_result_still_arrives() -> None:
    with running_cluster(1) as (_, rc):
        result = rc[0].apply_async(time.sleep, 0.5)
        with pytest.raises(ipp.TimeoutError):
            result.get(timeout=0.01)
        with pytest.raises(TimeoutError):  # also the builtin, as in ipyparallel
            result.get(timeout=0.01)
        assert result.get(timeout=30) is None


def test_load_balanced_map_and_apply_spread_over_the_engines() -> None:
    with running_cluster(2) as (_, rc):
        view = rc.load_balanced_view()
        assert view.map_sync(lambda x: x + 1, range(50)) == list(range(1, 51))
        assert view.map_sync(lambda x: x * 2, range(10), chunksize=3) == [x * 2 for x in range(10)]
        pids = set(view.map_sync(lambda _: __import__("os").getpid(), range(40)))
        assert len(pids) == 2
        assert view.apply_sync(lambda: "balanced") == "balanced"
        assert list(view.imap(lambda x: -x, range(5))) == [0, -1, -2, -3, -4]


def test_load_balanced_retries_rerun_a_failing_task_on_another_engine() -> None:
    fails_on_engine_0 = main_function(
        "def f():\n    if engine_number == 0:\n        raise RuntimeError('engine 0')\n"
        "    return engine_number",
        "f",
    )
    with running_cluster(2) as (_, rc):
        rc[0].execute("engine_number = 0", block=True)
        rc[1].execute("engine_number = 1", block=True)
        view = rc.load_balanced_view(targets=[0])
        with pytest.raises(ipp.RemoteError, match="engine 0"):
            view.apply_sync(fails_on_engine_0)
        view = rc.load_balanced_view()
        view.set_flags(retries=1)
        results = [view.apply_async(fails_on_engine_0) for _ in range(6)]
        assert [r.get(timeout=30) for r in results] == [1] * 6


def test_the_async_api_runs_on_the_callers_loop() -> None:
    async def scenario() -> list[int]:
        async with ipp.Cluster(n=2) as rc:
            results = await asyncio.gather(
                rc[0].apply_async(lambda: 10), rc[1].apply_async(lambda: 20)
            )
            both = await rc[:].apply_async(lambda: 1)
            return [*results, *both]

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == [10, 20, 1, 1]


def test_no_cluster_and_a_dead_controller_are_clear_errors_within_seconds(
    tmp_path: Path,
) -> None:
    with pytest.raises(ipp.ClusterUnavailable, match="no running cluster"):
        ipp.Client()
    with running_cluster(1) as (cluster, _):
        path = cluster.cluster_file
        assert cluster._process is not None
        copy = tmp_path / "copy.json"
        assert path is not None
        copy.write_bytes(path.read_bytes())
        os.kill(cluster._process.pid, signal.SIGKILL)
        cluster._process.reap_blocking()
    started = time.monotonic()
    with pytest.raises(ipp.ClusterUnavailable, match="did not answer"):
        ipp.Client(copy, timeout=1)
    assert time.monotonic() - started < 3


def test_results_report_progress_show_outputs_and_are_freed_when_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import gc
    import weakref

    speaks = main_function("def speaks(x):\n    print('said', x)\n    return x", "speaks")
    with running_cluster(2) as (_, rc):
        result = rc[:].apply_async(speaks, 3)
        result.wait_interactive(interval=0.01)
        assert result.progress == 2
        shown = capsys.readouterr().out
        assert "2/2 tasks finished" in shown
        result.display_outputs()
        shown = capsys.readouterr().out
        assert "[stdout:0] said 3\n" in shown
        assert "[stdout:1] said 3\n" in shown
        dropped = rc[:].apply_async(time.sleep, 0.2)
        ids = dropped.msg_ids
        ref = weakref.ref(dropped)
        del dropped
        gc.collect()
        assert ref() is None  # the client holds results weakly
        assert rc.wait(ids, timeout=30)  # its replies arrive and are discarded
        assert not any(msg_id in rc._results for msg_id in ids)


def test_spin_reads_what_arrived_and_runs_done_callbacks_without_a_blocking_wait() -> None:
    with running_cluster(1) as (_, rc):
        result = rc[0].apply_async(abs, -3)
        called: list[object] = []
        result.add_done_callback(lambda done: called.append(done.result()))
        deadline = time.monotonic() + 30
        while not result.done():  # only spin() reads the sockets here
            assert time.monotonic() < deadline, "spin() never delivered the result"
            rc.spin()
        assert called == [3]
        rc[0].spin()  # a view's spin is the client's


@pytest.mark.parametrize("n", [-1, "4", 2.5, True, [4]])
def test_a_bad_engine_count_is_one_value_error_before_anything_starts(n: object) -> None:
    with pytest.raises(ValueError, match=r"n must be a number of engines, 0 or more, not "):
        ipp.Cluster(n=n)  # type: ignore[arg-type]


def test_bad_arguments_to_views_are_clear_errors_before_anything_is_sent() -> None:
    with running_cluster(2) as (_, rc):
        view, balanced = rc[:], rc.load_balanced_view()
        bad: list[tuple[Callable[[], object], type[Exception], str]] = [
            (lambda: view.scatter("x", 5), TypeError, r"scatter\(\) needs sequences .* not int"),
            (lambda: view.scatter(3, [1]), TypeError, r"scatter\(\) takes a name \(str\)"),
            (lambda: view.map(abs, {1: 2}), TypeError, r"map\(\) needs sequences .* not dict"),
            (lambda: balanced.map(abs, 5), TypeError, r"not int \(sequence 1\)"),
            (lambda: balanced.imap(abs, [1], 7), TypeError, r"not int \(argument 2\)"),
            (lambda: balanced.map(abs, [1], chunksize="2"), ValueError, "chunksize must be an int"),
            (lambda: view.pull(5), TypeError, r"pull\(\) takes a name or a list of names"),
            (lambda: view.push([("a", 1)]), TypeError, r"push\(\) takes a dict of names"),
            (lambda: view.push({1: 2}), TypeError, r"push\(\) takes a dict of names"),
            (lambda: view.execute(5), TypeError, r"execute\(\) takes code as a str"),
            (lambda: rc[-3].apply(abs, 1), ipp.NoEnginesRegistered, "counts back past the 2"),
            (lambda: rc[1.5].apply(abs, 1), TypeError, "targets must be 'all', an int"),
            (lambda: rc[["0"]].apply(abs, 1), TypeError, "targets must be engine ids"),
            (lambda: rc.send_signal(999), ValueError, "999 is not a signal"),
        ]
        before = set(rc.outstanding)
        for call, kind, message in bad:
            with pytest.raises(kind, match=message):
                call()
        assert rc.outstanding == before
        assert rc[-1].apply_sync(abs, -2) == 2  # counting back within the engines is fine
        assert view.map_sync(abs, range(-3, 0)) == [3, 2, 1]
        view.push({"pulled": 1}, block=True)
        assert view.pull(name for name in ["pulled"]).get(timeout=30) == [[1], [1]]


def test_a_failed_execute_is_labelled_execute_as_in_ipyparallel() -> None:
    with running_cluster(2) as (_, rc):
        with pytest.raises(ipp.CompositeError, match=r"\[0:execute\]: NameError") as failed:
            rc[:].execute("never_defined", block=True)
        assert [error.kind for error in failed.value.elist] == ["execute", "execute"]
        with pytest.raises(ipp.RemoteError, match=r"\[1:apply\]: ZeroDivisionError"):
            rc[1].apply_sync(divmod, 1, 0)


def test_start_then_connect_as_ipyparallel_scripts_do() -> None:
    cluster = ipp.Cluster(n=2)
    with pytest.raises(ipp.ClusterUnavailable, match="not started"):
        cluster.connect_client_sync()
    try:
        cluster.start_cluster_sync()
        rc = cluster.connect_client_sync()
        assert cluster.connect_client_sync() is rc  # the cluster's own client
        rc.wait_for_engines(2, timeout=60)
        assert rc[:].apply_sync(lambda: 3) == [3, 3]

        async def connected() -> object:
            return await cluster.connect_client()

        assert asyncio.run(asyncio.wait_for(connected(), 30)) is rc
    finally:
        cluster.stop_cluster_sync()
    with pytest.raises(ipp.ClientClosed):
        rc.ids  # noqa: B018 - closed with its cluster
