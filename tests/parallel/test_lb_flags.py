"""Load-balanced views: ``ordered``, ``timeout`` and ``after``, as ipyparallel means them.

- ``ordered=False`` (``map``/``imap``): elements come as their tasks finish, so a slow
  one holds nothing up;
- ``timeout``: a task still waiting for an engine after that many seconds fails with
  ``TaskTimeout`` (it never ran);
- ``after``: a task starts only once the results it names succeeded; one that failed
  fails it (``TaskDependencyFailed``), and what is not a pending load-balanced task is
  refused at once, by name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _cluster_support import isolate, main_function, running_cluster

from parallel import RemoteError
from parallel.client._balancer import DEEP_HWM, HWM

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


SLEEP_THEN = main_function(
    """
    def sleep_then(pair):
        import time
        time.sleep(pair[0])
        return pair[1]
    """,
    "sleep_then",
)
STAMPED = main_function(
    """
    def stamped(seconds):
        import time
        start = time.time()
        time.sleep(seconds)
        return start, time.time()
    """,
    "stamped",
)


def test_unordered_results_come_as_tasks_finish_and_ordered_ones_in_order() -> None:
    items = [(2.0, "slow"), (0, "a"), (0, "b"), (0, "c"), (0, "d")]
    with running_cluster(2) as (_, rc):
        lview = rc.load_balanced_view()
        unordered = list(lview.imap(SLEEP_THEN, items, ordered=False))
        assert sorted(unordered) == ["a", "b", "c", "d", "slow"]
        # The other engine's fast tasks came first (one fast task may queue behind the
        # slow one: each engine holds up to two).
        assert unordered[0] != "slow"
        assert unordered.index("slow") >= 3
        assert list(lview.imap(SLEEP_THEN, items)) == ["slow", "a", "b", "c", "d"]
        ar = lview.map_async(SLEEP_THEN, items, ordered=False)
        assert list(ar).index("slow") >= 3
        assert ar.get() == ["slow", "a", "b", "c", "d"]  # get() keeps the sequence's order


def test_a_task_that_waits_longer_than_its_timeout_fails_without_running() -> None:
    with running_cluster(1) as (_, rc):
        lview = rc.load_balanced_view()
        # Short tasks first, so that the engine is fast and may hold a deep queue
        # (DEEP_HWM): a task with a timeout still goes only where fewer than HWM wait.
        for _ in range(20):
            lview.map_sync(abs, range(300))
            if rc._balancer is not None and rc._balancer.state.depth(0) == DEEP_HWM:
                break
        else:
            raise AssertionError("the engine never ran 50 short tasks a second")
        busy = [lview.apply_async(SLEEP_THEN, (3.0, "busy")) for _ in range(HWM)]
        with lview.temp_flags(timeout=0.5):
            late = lview.apply_async(SLEEP_THEN, (0, "ran"))
        with pytest.raises(RemoteError) as info:
            late.get(timeout=2.5)  # fails long before the engine frees up (6 s)
        assert info.value.ename == "TaskTimeout"
        assert [ar.get(timeout=30) for ar in busy] == ["busy"] * HWM


def test_after_waits_for_success_fails_on_failure_and_refuses_unknown_tasks() -> None:
    with running_cluster(2) as (_, rc):
        lview = rc.load_balanced_view()
        first = lview.apply_async(STAMPED, 1.0)
        with lview.temp_flags(after=first):
            second = lview.apply_async(STAMPED, 0)
        (_, first_end), (second_start, _) = first.get(timeout=30), second.get(timeout=30)
        assert second_start >= first_end  # the free engine did not start it early

        failed = lview.apply_async(SLEEP_THEN, "not a pair")
        with pytest.raises(RemoteError):
            failed.get(timeout=30)
        with lview.temp_flags(after=[failed]):
            doomed = lview.apply_async(SLEEP_THEN, (0, "ran"))
        with pytest.raises(RemoteError) as info:
            doomed.get(timeout=30)
        assert info.value.ename == "TaskDependencyFailed"

        with lview.temp_flags(after="no-such-task"), pytest.raises(ValueError, match="no-such"):
            lview.apply_async(SLEEP_THEN, (0, "ran"))
