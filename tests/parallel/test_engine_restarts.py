"""Engines that come back (issue 13): a dead engine is replaced under its id, runs the
recorded setup before it takes work, and one that keeps dying is given up on.

Real processes: one cluster of three local engines for the module (engine 0 is never
killed, engine 1 is killed under a task, engine 2 until the controller gives up), and one
kernel with its own cluster for ``%px --setup``; every process is killed by PID after.
The decisions themselves (restart or give up, how a death is described) are pure and
tested with exact lists.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cluster_support import isolate, main_function, running_cluster
from _support import Reaper, run
from test_px_kernels import _spec, cell, ok, outs

import parallel as ipp
from kernel import start_kernel
from parallel.cluster._cli import _list
from parallel.controller._controller import restart_policy
from parallel.controller._local_engines import LocalEngines
from parallel.controller._restarts import GiveUp, Restart, RestartPolicy
from parallel.launchers import describe_death
from parallel.magics._px_parse import PxUsageError, parse_px

pytestmark = pytest.mark.timeout(120)

#: What the engine 1 tests build with setup: a module imported, a name, and a function's
#: change to it (engine 1 only).
BUMP = main_function(
    """
    def bump():
        global marker
        marker += 1
    """,
    "bump",
)
SEGFAULT = main_function(
    """
    def segfault():
        import ctypes
        return ctypes.string_at(0)
    """,
    "segfault",
)
NAMESPACE = main_function(
    """
    def namespace():
        return js.__name__, marker
    """,
    "namespace",
)


# -- the decisions (pure) -----------------------------------------------------------------


def test_the_policy_restarts_until_the_limit_within_the_window_then_never_again() -> None:
    policy = RestartPolicy(max_deaths=3, window=60.0)
    why = "killed by signal 9 (SIGKILL)"
    decisions = [policy.died("a", now, why) for now in (0.0, 10.0, 20.0, 200.0)]
    assert decisions == [
        Restart("a", 1, why),
        Restart("a", 2, why),
        GiveUp("a", 3, 60.0, why),
        GiveUp("a", 3, 60.0, why),  # given up stays given up, however late the report
    ]
    assert isinstance(decisions[2], GiveUp)
    assert decisions[2].describe() == f"not restarted: it died 3 times within 60 s (last: {why})"
    assert policy.restarts("a") == 2
    assert policy.died("b", 20.0, "exited with code 3") == Restart("b", 1, "exited with code 3")


def test_deaths_older_than_the_window_do_not_count() -> None:
    policy = RestartPolicy(max_deaths=2, window=60.0)
    decisions = [policy.died("a", now, "x") for now in (0.0, 61.0, 122.0, 130.0)]
    assert decisions == [
        Restart("a", 1, "x"),
        Restart("a", 2, "x"),
        Restart("a", 3, "x"),
        GiveUp("a", 2, 60.0, "x"),
    ]


def test_bad_policies_and_limits_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="max_deaths"):
        RestartPolicy(max_deaths=0)
    with pytest.raises(ValueError, match="window"):
        RestartPolicy(window=0)
    assert restart_policy("5/30").max_deaths == 5
    with pytest.raises(ValueError, match=r"use DEATHS/SECONDS, e\.g\. 3/60$"):
        restart_policy("often")
    with pytest.raises(ValueError, match=r"^--restart-limit 'often': use DEATHS/SECONDS"):
        ipp.Cluster(n=1, restart_limit="often")  # refused before anything starts
    assert ipp.Cluster(n=1, restart_limit="5/30").restart_limit == "5/30"


def test_a_death_is_described_by_its_status() -> None:
    assert describe_death(3) == "exited with code 3"
    assert describe_death(-9) == "killed by signal 9 (SIGKILL)"
    assert describe_death(-15, oom_killed=True) == "killed by signal 15 (SIGTERM)"
    assert describe_death(-9, oom_killed=True) == (
        "killed by signal 9 (SIGKILL): it ran out of memory (the kernel's OOM killer)"
    )
    assert describe_death(-200) == "killed by signal 200"


def test_the_local_launcher_quotes_the_last_lines_of_the_engine_that_died(tmp_path: Path) -> None:
    engines = LocalEngines()
    engines._log_dir = tmp_path
    engines._uuids[123] = "u1"
    lines = [f"line {i}" for i in range(1000)]
    (tmp_path / "engine-u1.log").write_text("\n".join(lines) + "\n")
    tail = engines.output_of(123)
    assert tail.endswith("line 999")
    assert "line 0\n" not in tail
    assert tail.splitlines()[0].startswith("line ")  # the cut first line is dropped
    assert engines.output_of(456) == ""
    # A crash report (innermost frame first) is quoted from its start.
    crash = ["Fatal Python error: Segmentation fault", "", "Current thread:"]
    crash += [f'  File "f{i}.py", line {i} in f{i}' for i in range(200)]
    (tmp_path / "engine-u1.log").write_text("noise\n" + "\n".join(crash) + "\n")
    quoted = engines.output_of(123)
    assert quoted.startswith("Fatal Python error: Segmentation fault\n\nCurrent thread:\n")
    assert "line 0 in f0" in quoted
    assert len(quoted) <= 2000
    assert engines.can_replace


def test_px_setup_is_an_option_of_px_and_of_the_cell_magic() -> None:
    args = parse_px("-t 1 --setup import json as js", "px")
    assert (args.setup, args.targets, args.code) == (True, 1, "import json as js")
    assert parse_px("--setup", "cell").setup
    assert not parse_px("import os", "px").setup
    with pytest.raises(PxUsageError, match="unknown option '--setup'"):
        parse_px("--setup", "config")


# -- a real cluster -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ipp.Cluster, ipp.Client]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, tmp_path_factory.mktemp("restarts"))
        with running_cluster(3) as (started, client):
            yield started, client


def _kill_and_wait_back(rc: ipp.Client, engine: int, timeout: float = 30.0) -> int:
    """SIGKILL ``engine``; once its replacement is announced, its new pid."""
    old = rc._records[engine].pid
    restarts = rc.restarts.get(engine)
    before = 0 if restarts is None else restarts.count
    os.kill(old, signal.SIGKILL)

    def back() -> bool:
        record, now = rc._records.get(engine), rc.restarts.get(engine)
        return record is not None and record.pid != old and now is not None and now.count > before

    assert rc._pump.pump_until(back, timeout), f"engine {engine} did not come back"
    return rc._records[engine].pid


def test_a_killed_engine_fails_its_task_at_once_and_comes_back_with_its_setup(
    cluster: tuple[ipp.Cluster, ipp.Client], capsys: pytest.CaptureFixture[str]
) -> None:
    _, rc = cluster
    assert rc.setup("import json as js; marker = 41").get(timeout=20) is not None
    rc[1].setup(BUMP).get(timeout=20)
    assert rc[:].pull("marker", block=True) == [41, 42, 41]
    old = rc[1].apply_sync(os.getpid)
    sleeping = rc[1].apply_async(time.sleep, 60)
    killed = time.monotonic()
    os.kill(old, signal.SIGKILL)
    with pytest.raises(ipp.EngineError, match=r"engine 1 died: killed by signal 9 \(SIGKILL\)"):
        sleeping.get(timeout=20)
    assert time.monotonic() - killed < 3
    assert rc._pump.pump_until(lambda: 1 in rc._records and rc._records[1].pid != old, 30)
    # The replacement: same id, a new process, the recorded setup run before it took work.
    assert rc.restarts[1].count == 1
    assert "signal 9" in rc.restarts[1].reason
    assert rc[1].apply_sync(NAMESPACE) == ("json", 42)
    assert rc[0].apply_sync(NAMESPACE) == ("json", 41)
    said = capsys.readouterr().err
    assert said.count("engine 1 restarted") == 1, said
    assert "killed by signal 9 (SIGKILL); its setup ran again (2 recorded)" in said
    # The controller holds the setup: a second client sees it; loom cluster list, the restart.
    with ipp.Client(rc.cluster_file) as second:
        assert [item["summary"] for item in second.recorded_setup] == [
            "import json as js; marker = 41",
            "bump",
        ]
        assert second.restarts[1].count == 1
    _list()
    assert "restarted once (last: killed by signal 9 (SIGKILL))" in capsys.readouterr().out


def _joining(rc: ipp.Client, engine: int, timeout: float = 30.0) -> bool:
    """Ask the hub again until it lists ``engine`` as joining (its setup replay runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc._request_engines()
        if rc._pump.pump_until(lambda: any(e["id"] == engine for e in rc.joining), 0.2):
            return True
    return False


def test_a_replacement_takes_no_work_and_is_not_listed_until_its_setup_ran(
    cluster: tuple[ipp.Cluster, ipp.Client],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _, rc = cluster
    armed, go = tmp_path / "armed", tmp_path / "go"
    hold = (
        "import os, time\n"
        f"while os.path.exists({str(armed)!r}) and not os.path.exists({str(go)!r}):\n"
        "    time.sleep(0.01)"
    )
    rc[1].setup(hold).get(timeout=20)  # not armed: returns at once
    armed.touch()
    old = rc._records[1].pid
    os.kill(old, signal.SIGKILL)
    assert _joining(rc, 1), "the replacement was never listed as joining"
    assert 1 not in rc.ids  # registered with the hub, but no client was told of it
    _list()
    assert "engine 1" in (listed := capsys.readouterr().out)
    assert "joining: the controller is replaying the recorded setup on it" in listed
    go.touch()
    assert rc._pump.pump_until(lambda: 1 in rc._records and rc._records[1].pid != old, 30)
    assert rc[1].apply_sync(NAMESPACE) == ("json", 42)  # the whole setup ran, in order
    rc._request_engines()
    assert rc._pump.pump_until(lambda: not rc.joining, 10)


def test_a_replacement_whose_setup_fails_is_announced_with_the_error_and_usable(
    cluster: tuple[ipp.Cluster, ipp.Client],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _, rc = cluster
    flag = tmp_path / "fail-setup"
    rc[2].setup(f"import os\nassert not os.path.exists({str(flag)!r}), 'flag set'").get(timeout=20)
    flag.touch()
    _kill_and_wait_back(rc, 2)
    said = capsys.readouterr().err
    assert "engine 2 restarted after it died: killed by signal 9 (SIGKILL), but its setup" in said
    assert "failed: AssertionError: flag set" in said
    assert rc[2].apply_sync(lambda: 7) == 7


def test_an_engine_that_keeps_dying_is_given_up_on_with_its_last_reason(
    cluster: tuple[ipp.Cluster, ipp.Client], capsys: pytest.CaptureFixture[str]
) -> None:
    _, rc = cluster
    deaths = rc.restarts[2].count  # 1 in this module's order; the limit is 3 in 60 s
    for _ in range(2 - deaths):
        _kill_and_wait_back(rc, 2)
    crashing = rc[2].apply_async(SEGFAULT)  # the third death: a crash in C
    with pytest.raises(ipp.EngineError, match=r"killed by signal 11 \(SIGSEGV\)"):
        crashing.get(timeout=20)
    given_up = "not restarted: it died 3 times within 60 s (last: killed by signal 11 (SIGSEGV))"
    assert rc._pump.pump_until(lambda: given_up in rc._lost.get(2, ""), 20), rc._lost
    said = capsys.readouterr().err
    assert given_up in said
    # ... with the engine's last output: the crash's report, from its start.
    assert "its last output:\nFatal Python error: Segmentation fault" in said
    assert "in segfault" in said
    assert rc.ids == [0, 1]
    with pytest.raises(ipp.NoEnginesRegistered, match="engine 2 is not registered"):
        rc[2].apply_sync(os.getpid)


def test_recorded_setup_can_be_cleared_and_bad_setup_is_refused_in_one_line(
    cluster: tuple[ipp.Cluster, ipp.Client],
) -> None:
    _, rc = cluster
    with pytest.raises(TypeError, match="setup takes code"):
        rc.setup(42)  # type: ignore[arg-type]
    rc.clear_setup()
    with ipp.Client(rc.cluster_file) as second:
        assert second.recorded_setup == []


def test_a_live_engine_that_registers_again_does_not_replay_its_setup(
    cluster: tuple[ipp.Cluster, ipp.Client], tmp_path: Path
) -> None:
    _, rc = cluster
    runs = tmp_path / "runs"
    rc[0].setup(f"open({str(runs)!r}, 'a').write('x')").get(timeout=20)
    assert runs.read_text() == "x"
    pid = rc._records[0].pid
    os.kill(pid, signal.SIGSTOP)  # silent: the hub declares it lost by its heartbeat
    try:
        assert rc._pump.pump_until(lambda: 0 not in rc._records, 30)
    finally:
        os.kill(pid, signal.SIGCONT)  # it answers again, and its hub link registers again
    assert rc._pump.pump_until(lambda: 0 in rc._records, 30)
    assert rc._records[0].pid == pid  # the same process, namespace intact ...
    assert rc[0].apply_sync(lambda: 1) == 1
    assert runs.read_text() == "x"  # ... so its setup was not run again
    assert 0 not in rc.restarts


# -- %px --setup in a kernel ------------------------------------------------------------------


@pytest.mark.parametrize("kernel_name", ["loom", "python3"])
def test_px_setup_runs_now_and_again_on_a_replacement_said_in_the_running_cell(
    kernel_name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate(monkeypatch, tmp_path)
    flag = tmp_path / "go"
    with running_cluster(2) as (_, rc):

        async def scenario(reaper: Reaper) -> None:
            async with start_kernel(spec=_spec(kernel_name), startup_timeout=30) as (m, client):
                reaper.track_manager(m)
                await ok(client, "%load_ext parallel")
                assert (await ok(client, "%px --setup import json as js")).stdout == ""
                # A cell waits on engine 0 while engine 1 is killed and replaced.
                waiting = asyncio.ensure_future(
                    cell(
                        client,
                        "%%px -t 0\nimport os, time\n"
                        f"while not os.path.exists({str(flag)!r}): time.sleep(0.01)",
                    )
                )
                await asyncio.to_thread(_kill_and_wait_back, rc, 1)
                flag.touch()
                during = await asyncio.wait_for(waiting, 30)
                assert "engine 1 restarted after it died: killed by signal 9" in during.stderr
                assert outs(await ok(client, "%px js.__name__")) == {0: "'json'", 1: "'json'"}

        run(scenario, timeout=90)
