"""Records travel in batches (issue 10): what a batch carries survives its client, and an
engine SIGKILLed loses only what its record window still held; real processes.

The engines here hold their records for a second after their last reply
(``LOOM_RECORD_QUIET=1``; 25 ms by default) and for at most 30 s while busy
(``LOOM_RECORD_WINDOW=30``; 100 ms by default), so what the window holds at a given
moment is known without any timing luck: a reply the client has in hand is, for a
second, in its engine only; and a record that arrives well before 30 s was sent because
its engine went quiet.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cluster_support import main_function, running_cluster
from _support import wait_gone

from parallel import Client

pytestmark = pytest.mark.timeout(120)

QUIET = 1.0
WINDOW = 30.0

#: A client that runs tasks, prints their msg_ids and results, then waits to be killed.
CLIENT = """
import json, sys
from parallel import Client
rc = Client(sys.argv[1])
ars = [rc[i % 2].apply_async(pow, i, 2) for i in range(40)]
print(json.dumps({ar.msg_ids[0]: ar.get(timeout=30) for ar in ars}), flush=True)
sys.stdin.read()  # killed while waiting here
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Client, list[int]]]:
    with pytest.MonkeyPatch.context() as patch:
        tmp = tmp_path_factory.mktemp("batches")
        patch.setenv("JUPYTER_RUNTIME_DIR", str(tmp / "runtime"))
        patch.setenv("LOOM_HISTORY_FILE", str(tmp / "history.sqlite"))
        patch.setenv("LOOM_RECORD_WINDOW", str(WINDOW))
        patch.setenv("LOOM_RECORD_QUIET", str(QUIET))
        with running_cluster(2, restart_engines=False) as (started, rc):
            assert started.cluster_file is not None
            pids = [rc._records[i].pid for i in (0, 1)]
            yield started.cluster_file, rc, pids


def _recorded(rc: Client, msg_ids: list[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while set(rc.result_status(msg_ids)["completed"]) != set(msg_ids):
        assert time.monotonic() < deadline, "the records never reached the controller"


def test_a_batch_survives_its_client_killed(cluster: tuple[Path, Client, list[int]]) -> None:
    path, rc, _ = cluster
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            results = json.loads(child.stdout.readline())
            # Killed with its results in hand, their records still in the engines' windows.
            status = rc.result_status(list(results))
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=10) == -signal.SIGKILL
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
    assert len(status["completed"]) < len(results)  # the window held some when it died
    _recorded(rc, list(results))
    # Another client gets every result by id, from the records alone.
    assert {m: rc.get_result(m).get(timeout=10) for m in results} == results
    rows = rc.db_query({"msg_id": {"$in": list(results)}}, keys=["msg_id", "engine_id"])
    assert sorted(r["engine_id"] for r in rows) == [0] * 20 + [1] * 20


def test_an_engine_that_goes_quiet_sends_its_records_before_the_window_ends(
    cluster: tuple[Path, Client, list[int]],
) -> None:
    _, rc, _ = cluster
    ar = rc[0].apply_async(pow, 5, 2)
    assert ar.get(timeout=30) == 25
    # The window would hold it 30 s; the engine's quiet timer sends it after 1 s.
    _recorded(rc, ar.msg_ids, timeout=WINDOW / 2)
    assert rc.get_result(ar.msg_ids[0]).get(timeout=10) == 25


MAKE = main_function(
    """
    def make():
        global array
        import numpy
        array = numpy.zeros(20_000)  # 160 kB: a buffer of its own, the array's memory
        return array
    """,
    "make",
)
BUMP = main_function("def bump():\n    array[:] += 1\n", "bump")


def test_a_result_is_recorded_as_it_was_sent(cluster: tuple[Path, Client, list[int]]) -> None:
    numpy = pytest.importorskip("numpy")
    _, rc, _ = cluster
    ar = rc[0].apply_async(MAKE)
    assert not ar.get(timeout=30).any()
    rc[0].apply_sync(BUMP)  # the returned array changes while its record waits
    _recorded(rc, ar.msg_ids)
    recorded = rc.get_result(ar.msg_ids[0]).get(timeout=10)
    assert numpy.array_equal(recorded, numpy.zeros(20_000))


def test_an_engine_killed_right_after_replying_loses_only_its_window(
    cluster: tuple[Path, Client, list[int]],
) -> None:
    _, rc, pids = cluster
    older = rc[1].apply_async(pow, 2, 10)
    assert older.get(timeout=30) == 1024
    _recorded(rc, older.msg_ids)  # its window closed: the controller has it
    last = rc[1].apply_async(pow, 3, 3)
    assert last.get(timeout=30) == 27
    os.kill(pids[1], signal.SIGKILL)  # within the window of the reply just received
    assert wait_gone(pids[1], 10)
    # What left the window is kept, finished; what it held is lost with the engine
    # (``durability="sync"`` is the mode without such a window).
    status = rc.result_status(older.msg_ids + last.msg_ids)
    assert status == {"completed": older.msg_ids, "pending": [], "unknown": last.msg_ids}
    assert rc.get_result(older.msg_ids[0]).get(timeout=10) == 1024
    with pytest.raises(KeyError):
        rc.get_result(last.msg_ids[0])
