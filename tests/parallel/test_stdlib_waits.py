"""``concurrent.futures.wait`` and ``as_completed`` on results, though no thread reads them."""

from __future__ import annotations

import concurrent.futures
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from pathlib import Path

import pytest
from _cluster_support import isolate, running_cluster

from parallel.client._stdlib_waits import Waiters


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def test_the_cpython_internals_the_hook_relies_on_are_still_there() -> None:
    # Canary: wait() installs waiters through Future._waiters.append and blocks on
    # waiter.event.wait (concurrent/futures/_base.py).
    future: Future[int] = Future()
    seen: list[object] = []

    class Recording(list[object]):
        def append(self, waiter: object) -> None:
            seen.append(waiter)
            super().append(waiter)

    future._waiters = Recording()  # type: ignore[attr-defined]
    future.set_result(1)  # already done: wait() returns without installing
    assert wait([future], timeout=0).done == {future}
    pending: Future[int] = Future()
    pending._waiters = Recording()  # type: ignore[attr-defined]
    assert wait([pending], timeout=0).not_done == {pending}
    assert len(seen) == 1
    assert hasattr(seen[0], "event")


def test_a_result_sets_what_future_init_sets() -> None:
    # Canary: AsyncResult sets Future's attributes itself instead of calling
    # Future.__init__ (which makes a Condition per result); a new one would be missed.
    from concurrent.futures._base import RUNNING

    from parallel.client._asyncresult import AsyncResult

    class Pumpless:
        _pump = None

    result = AsyncResult(Pumpless(), ["m"])  # type: ignore[arg-type]
    assert set(vars(Future())) <= set(vars(result))
    assert result._state == RUNNING
    assert result.running()
    assert not result.done()
    assert isinstance(result._waiters, Waiters)


def test_wait_and_as_completed_complete_results_with_timeouts_honoured() -> None:
    with running_cluster(2) as (_, rc):
        fast = rc[0].apply_async(lambda: "fast")
        slow = rc[1].apply_async(time.sleep, 1.0)
        assert isinstance(fast._waiters, Waiters)
        done, not_done = wait([fast, slow], return_when=FIRST_COMPLETED, timeout=30)
        assert fast in done
        assert slow in not_done
        started = time.monotonic()
        done, not_done = wait([slow], timeout=0.05)
        assert not_done == {slow}
        assert time.monotonic() - started < 0.5
        results = [rc[i % 2].apply_async(lambda x: x, i) for i in range(6)]
        finished = [r.result() for r in as_completed(results, timeout=30)]
        assert sorted(finished) == list(range(6))
        done, _ = wait([slow], timeout=30)
        assert done == {slow}


def test_a_wait_mixing_thread_futures_and_results_sees_both() -> None:
    with running_cluster(1) as (_, rc), ThreadPoolExecutor(1) as pool:
        threaded = pool.submit(lambda: "thread")
        remote = rc[0].apply_async(time.sleep, 0.3)
        done, _ = wait([threaded, remote], timeout=30)
        assert done == {threaded, remote}
        assert concurrent.futures.wait([remote], timeout=0).done == {remote}
