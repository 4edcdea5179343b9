"""A closed client says so: every call raises :class:`ClientClosed` at once (not an error
from a closed socket or ``epoll``), results it was still waiting for fail with it, and
nothing is lost: a new client fetches those results from the controller's records."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from _cluster_support import isolate, running_cluster

import parallel
from parallel import Client, ClientClosed
from parallel.error import ClientClosed as ClientClosedFromError
from parallel.error import ParallelError

TIMEOUT = 30.0


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def test_the_error_is_exported_where_ipyparallel_users_look() -> None:
    assert ClientClosed is ClientClosedFromError is parallel.error.ClientClosed
    assert issubclass(ClientClosed, ParallelError)
    assert issubclass(ClientClosed, RuntimeError)


def test_every_call_on_a_closed_client_raises_client_closed_and_pending_results_fail() -> None:
    with running_cluster(2) as (cluster, rc):
        view = rc[:]
        balanced = rc.load_balanced_view()
        finished = view.apply_async(int)
        assert finished.get(timeout=TIMEOUT) == [0, 0]
        pending = view.apply_async(time.sleep, 0.5)
        rc.close()

        # What it was still waiting for failed at once, and says how to get it back.
        assert pending.done()
        with pytest.raises(ClientClosed, match=r"get_result\(\['"):
            pending.get(timeout=0)
        assert isinstance(pending.exception(0), ClientClosed)
        assert finished.get(timeout=0) == [0, 0]  # what had arrived stays
        assert rc.wait([pending], timeout=0)

        calls: dict[str, Any] = {
            "rc.ids": lambda: rc.ids,
            "rc[:].apply_sync": lambda: rc[:].apply_sync(int),
            "view.apply_sync": lambda: view.apply_sync(int),
            "view.execute": lambda: view.execute("a = 1"),
            "view.push": lambda: view.push({"a": 1}),
            "view.pull": lambda: view.pull("a"),
            "balanced.apply_sync": lambda: balanced.apply_sync(int),
            "balanced.map_sync": lambda: balanced.map_sync(abs, [1, 2]),
            "rc.wait_for_engines": lambda: rc.wait_for_engines(1, timeout=1),
            "rc.db_query": lambda: rc.db_query({}),
            "rc.get_result": lambda: rc.get_result(pending.msg_ids),
            "rc.send_signal": lambda: rc.send_signal(2),
            "rc.shutdown": lambda: rc.shutdown(),
        }
        for name, call in calls.items():
            started = time.monotonic()
            with pytest.raises(ClientClosed, match=r"Client is closed"):
                call()
            assert time.monotonic() - started < 1.0, name  # at once, not after a timeout
        rc.close()  # a second close does nothing

        # Nothing lost: the tasks ran on, and a new client finds their results.
        assert cluster.cluster_file is not None
        with Client(cluster.cluster_file) as again:
            # The controller learns of a task from the engine's records (with its reply,
            # or at the engine's next ping while it runs): for ids this process made,
            # get_result waits for them (test below).
            assert again.get_result(pending.msg_ids).get(timeout=TIMEOUT) == [None, None]
            with pytest.raises(KeyError, match="no record of no-such-task: not a task of this"):
                again.get_result("no-such-task")
            assert again[:].apply_sync(int) == [0, 0]


def test_an_await_asleep_when_the_client_closes_raises_client_closed() -> None:
    with running_cluster(1) as (_, rc):

        async def awaited(result: parallel.AsyncResult) -> Any:
            return await result

        async def main() -> None:
            pending = rc[0].apply_async(time.sleep, 1.0)
            waiter = asyncio.ensure_future(awaited(pending))
            async with asyncio.timeout(TIMEOUT):
                await asyncio.sleep(0)  # one step of the loop: the waiter runs until it sleeps
                assert rc._pump._sleepers  # asleep on the loop, as when the close comes
                rc.close()
                with pytest.raises(ClientClosed, match="closed before this result arrived"):
                    await waiter
                with pytest.raises(ClientClosed):
                    await rc[0].apply_async(int)

        asyncio.run(main())


def test_get_result_of_a_task_this_process_sent_waits_for_its_record() -> None:
    """Records reach the controller after the reply (or at the engine's next ping while
    the task runs): for a task this process sent, get_result waits for them, where any
    other unknown id is a KeyError at once."""
    with running_cluster(1) as (_, rc):
        finished = rc[0].apply_async(abs, -4)
        assert finished.get(timeout=TIMEOUT) == 4
        msg_id = finished.msg_ids[0]
        del finished  # no longer tracked here: only the controller's record can answer
        assert rc.get_result(msg_id).get(timeout=TIMEOUT) == 4
        running = rc[0].apply_async(time.sleep, 0.5)
        ids = running.msg_ids
        del running
        assert rc.get_result(ids).get(timeout=TIMEOUT) == [None]
        started = time.monotonic()
        with pytest.raises(KeyError, match="no record of someone-elses-task"):
            rc.get_result("someone-elses-task")
        assert time.monotonic() - started < 1.0
