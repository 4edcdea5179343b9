"""Tasks on a dying engine (issue 13): honest retries, poison tasks, hangs, no duplicates.

One cluster for the module; tests kill its engines and ``Pool.top_up`` starts new ones,
so nothing here depends on the controller replacing engines (it may, or may not).

- ``retries=N`` (ipyparallel's meaning): any failure, an exception too, runs the task
  again, on another engine where there is one; ``retry_on="engine-death"`` retries only
  when the engine died;
- an engine killed (SIGKILL, ``os._exit`` in the task) under a task: the task runs again
  elsewhere; a task that kills every engine it lands on fails after 3 deaths, naming
  them, whatever its retries, and the pool lives on;
- an allocation past an ``RLIMIT_AS`` set on the engine is a ``MemoryError`` there, the
  engine lives, and a retry runs the task on an engine without the limit;
- a stopped engine (SIGSTOP) is declared lost by its heartbeat within the timeout, its
  task runs again elsewhere, and when it resumes (SIGCONT) its late reply is not
  delivered a second time.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cluster_support import isolate, main_function, running_cluster
from _healing_support import Pool

from parallel import EngineError, RemoteError

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, tmp_path_factory.mktemp("healing"))
        with running_cluster(2) as (cluster, client):
            healing = Pool(cluster, client)
            try:
                yield healing
            finally:
                healing.close()


FAIL_ONCE = main_function(
    """
    def fail_once(flag):
        import os
        if not os.path.exists(flag):
            open(flag, "w").close()
            raise ValueError("first attempt fails")
        return os.getpid()
    """,
    "fail_once",
)
COUNT_AND_FAIL = main_function(
    """
    def count_and_fail(path):
        with open(path, "a") as f:
            f.write("x")
        raise ValueError("always fails")
    """,
    "count_and_fail",
)
WAIT_THEN_PID = main_function(
    """
    def wait_then_pid(started, seconds):
        import os, time
        with open(started, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(seconds)
        with open(started + ".done", "a") as f:
            f.write(f"{os.getpid()}\\n")
        return os.getpid()
    """,
    "wait_then_pid",
)
HOLD_THEN_PID = main_function(
    """
    def hold_then_pid(started, release):
        import os, time
        with open(started, "a") as f:
            f.write(f"{os.getpid()}\\n")
        deadline = time.monotonic() + 120
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
        with open(started + ".done", "a") as f:
            f.write(f"{os.getpid()}\\n")
        return os.getpid()
    """,
    "hold_then_pid",
)
EXIT_ONCE = main_function(
    """
    def exit_once(flag):
        import os
        if not os.path.exists(flag):
            open(flag, "w").close()
            os._exit(1)
        return os.getpid()
    """,
    "exit_once",
)
SUICIDE = main_function(
    """
    def suicide():
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    """,
    "suicide",
)
ALLOCATE_PAST_LIMIT = main_function(
    """
    def allocate_past_limit(flag):
        import os, resource
        if os.path.exists(flag):
            return os.getpid()
        open(flag, "w").close()
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (size + 256 * 2**20, hard))
        try:
            block = bytearray(2**31)
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        return len(block)
    """,
    "allocate_past_limit",
)


def _started(path: Path, count: int, pool: Pool) -> list[int]:
    """Pump until ``count`` pids are in ``path`` (tasks write theirs as they start)."""

    def pids() -> list[int]:
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    assert pool.client._pump.pump_until(lambda: len(pids()) >= count, 60), pids()
    return pids()


# -- retries -----------------------------------------------------------------------------


def test_retries_rerun_an_exception_on_another_engine(pool: Pool, tmp_path: Path) -> None:
    pool.top_up(2)
    view = pool.client.load_balanced_view(retries=1)
    ar = view.apply_async(FAIL_ONCE, str(tmp_path / "flag"))
    pid = ar.get(timeout=60)
    assert pid in {pool.pid_of(e) for e in pool.live()}
    assert (tmp_path / "flag").exists()  # the first attempt ran, raised, and was retried


def test_retry_on_engine_death_leaves_an_exception_alone(pool: Pool, tmp_path: Path) -> None:
    pool.top_up(2)
    view = pool.client.load_balanced_view()
    counter = tmp_path / "runs"
    with view.temp_flags(retries=3, retry_on="engine-death"), pytest.raises(RemoteError):
        view.apply_async(COUNT_AND_FAIL, str(counter)).get(timeout=60)
    assert counter.read_text() == "x"
    with view.temp_flags(retries=2), pytest.raises(RemoteError, match="always fails"):
        view.apply_async(COUNT_AND_FAIL, str(counter)).get(timeout=60)
    assert counter.read_text() == "x" * 4


def test_bad_flags_are_one_line_errors(pool: Pool) -> None:
    view = pool.client.load_balanced_view()
    with pytest.raises(ValueError, match="retry_on must be 'any' or 'engine-death', not 'x'"):
        view.set_flags(retry_on="x")
    with pytest.raises(ValueError, match="retries must be an int >= 0, not -1"):
        pool.client.load_balanced_view(retries=-1)
    with pytest.raises(ValueError, match="max_engine_deaths must be None or an int >= 1"):
        view.set_flags(max_engine_deaths=0)
    assert (view.retry_on, view.retries) == ("any", 0)


# -- engines that die under a task -------------------------------------------------------


def test_a_task_whose_engine_is_killed_runs_again_elsewhere(pool: Pool, tmp_path: Path) -> None:
    pool.top_up(2)
    started = tmp_path / "started"
    view = pool.client.load_balanced_view(retries=1, retry_on="engine-death")
    ar = view.apply_async(WAIT_THEN_PID, str(started), 1.0)
    (first,) = _started(started, 1, pool)
    victim = next(e for e in pool.live() if pool.pid_of(e) == first)
    pool.kill(victim)
    second = ar.get(timeout=60)
    assert second != first
    assert _started(started, 2, pool) == [first, second]


def test_a_task_without_retries_on_a_killed_engine_fails_naming_it(
    pool: Pool, tmp_path: Path
) -> None:
    pool.top_up(2)
    started = tmp_path / "started"
    ar = pool.client.load_balanced_view().apply_async(WAIT_THEN_PID, str(started), 30.0)
    (pid,) = _started(started, 1, pool)
    victim = next(e for e in pool.live() if pool.pid_of(e) == pid)
    pool.kill(victim)
    with pytest.raises(EngineError, match=f"engine {victim}"):
        ar.get(timeout=60)


def test_os_exit_in_a_task_is_an_engine_death_and_is_retried(pool: Pool, tmp_path: Path) -> None:
    pool.top_up(2)
    view = pool.client.load_balanced_view(retries=1, retry_on="engine-death")
    pid = view.apply_async(EXIT_ONCE, str(tmp_path / "flag")).get(timeout=60)
    assert pid in {pool.pid_of(e) for e in pool.live()}


def test_a_poison_task_fails_after_three_engine_deaths_and_the_pool_lives(pool: Pool) -> None:
    pool.top_up(4)
    view = pool.client.load_balanced_view(retries=10)
    ar = view.apply_async(SUICIDE)
    with pytest.raises(EngineError, match=r"task killed 3 engines \(\d+, \d+, \d+\)"):
        ar.get(timeout=90)
    assert pool.client.load_balanced_view().apply_sync(lambda: 7) == 7


def test_max_engine_deaths_is_a_view_flag(pool: Pool) -> None:
    pool.top_up(2)
    view = pool.client.load_balanced_view(retries=10, max_engine_deaths=1)
    with pytest.raises(EngineError, match=r"task killed 1 engine \(\d+\)"):
        view.apply_async(SUICIDE).get(timeout=60)


def test_an_allocation_past_rlimit_as_is_a_memory_error_and_retried(
    pool: Pool, tmp_path: Path
) -> None:
    pool.top_up(2)
    flag = str(tmp_path / "flag")
    with pytest.raises(RemoteError) as failed:
        pool.client.load_balanced_view().apply_async(ALLOCATE_PAST_LIMIT, flag).get(timeout=60)
    assert failed.value.ename == "MemoryError"
    (tmp_path / "flag").unlink()
    view = pool.client.load_balanced_view(retries=1)  # retry_on="any": an error is retried
    pid = view.apply_async(ALLOCATE_PAST_LIMIT, flag).get(timeout=60)
    assert pid in {pool.pid_of(e) for e in pool.live()}  # the engine lived


# -- hangs --------------------------------------------------------------------------------


def test_a_stopped_engine_is_lost_by_heartbeat_and_its_late_reply_is_dropped(
    pool: Pool, tmp_path: Path
) -> None:
    pool.top_up(2)
    started = tmp_path / "started"
    view = pool.client.load_balanced_view(retries=1, retry_on="engine-death")
    release = tmp_path / "release"
    # Held until released: the first attempt is surely still running when it is stopped.
    ar = view.apply_async(HOLD_THEN_PID, str(started), str(release))
    (first,) = _started(started, 1, pool)
    victim = next(e for e in pool.live() if pool.pid_of(e) == first)
    pool.kill(victim, signal.SIGSTOP)
    took = pool.wait_lost(victim, 15)
    assert "silent for 3 s" in pool.client._lost[victim]
    release.touch()
    second = ar.get(timeout=60)
    assert second != first
    os.kill(first, signal.SIGCONT)
    pool.stopped.discard(first)
    # The old engine finishes its attempt and replies: the client must not take it.
    done = Path(f"{started}.done")
    assert pool.client._pump.pump_until(
        lambda: done.exists() and str(first) in done.read_text(), 30
    )
    pool.client._pump.drain()
    assert ar.get(0) == second
    assert pool.client.balancer.state.stale == 0  # its link was closed: nothing arrived
    assert took < 15


def test_an_engine_the_controller_did_not_start_is_lost_when_its_connection_closes(
    pool: Pool,
) -> None:
    """No pidfd watches a standalone engine; its closed connection beats the heartbeat."""
    pool.top_up(len(pool.live()) + 1)
    standalone = {pid for pid, process in pool.started.items() if process.poll() is None}
    victim = next(e for e in pool.live() if pool.pid_of(e) in standalone)
    pool.kill(victim)
    pool.wait_lost(victim, 15)
    assert pool.client._lost[victim] == "its connection closed: the process exited"
