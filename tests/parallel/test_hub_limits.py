"""The controller's hub holds bounded memory whatever a peer sends (issue 12), and no
legitimate peer is cut off by its frame limit (``parallel.protocol._hub_limits``).

One cluster for the module: one engine, plaintext tcp on loopback (where anyone on the
host reaches the hub), the hub's limit at its 1 MiB minimum so that records over it are
cheap to make."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from _cluster_support import main_function, running_cluster

from kernel.protocol import JSONDict, Session
from parallel import Client, Cluster, RemoteError
from parallel.engine._hub_link import encode_batch
from parallel.engine._record_fit import Item, batch_size, fit_batch, truncated
from parallel.protocol._controller_info import ControllerInfo
from parallel.protocol._hub_limits import (
    HUB_MAX_MESSAGE_SIZE,
    MIN_HUB_MESSAGE_SIZE,
    hub_max_message_size,
)

pytestmark = pytest.mark.timeout(120)

TIMEOUT_MS = 20_000
LIMIT = MIN_HUB_MESSAGE_SIZE


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Client]]:
    with pytest.MonkeyPatch.context() as patch:
        tmp = tmp_path_factory.mktemp("hub-limits")
        patch.setenv("JUPYTER_RUNTIME_DIR", str(tmp / "runtime"))
        patch.setenv("LOOM_HISTORY_FILE", str(tmp / "history.sqlite"))
        patch.setenv("LOOM_HUB_MAX_MESSAGE_SIZE", str(LIMIT))
        with running_cluster(1, transport="tcp") as (started, rc):
            yield started, rc


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _disconnected(monitor: zmq.Socket[bytes]) -> None:
    """Wait (with a timeout) for the monitored socket's connection to be dropped."""
    from zmq.utils.monitor import recv_monitor_message

    while True:
        assert monitor.poll(TIMEOUT_MS), "the hub kept reading an oversize frame"
        if recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED:
            return


def test_the_limit_is_in_the_cluster_file_and_read_from_the_environment(
    cluster: tuple[Cluster, Client],
) -> None:
    started, rc = cluster
    assert started.cluster_file is not None
    assert ControllerInfo.read(started.cluster_file).max_message_size == LIMIT
    assert rc.info.max_message_size == LIMIT
    assert hub_max_message_size({}) == HUB_MAX_MESSAGE_SIZE
    assert hub_max_message_size({"LOOM_HUB_MAX_MESSAGE_SIZE": "2G"}) == 2 << 30
    assert hub_max_message_size({"LOOM_HUB_MAX_MESSAGE_SIZE": "0"}) == 0


def test_junk_frames_over_the_limit_leave_the_controllers_memory_bounded(
    cluster: tuple[Cluster, Client],
) -> None:
    # Unbounded, 5 frames of 200 MB took a controller from 31 MB to a 231 MB peak: it
    # read each whole. Now libzmq drops the connection at the frame's announced size.
    started, rc = cluster
    assert started._process is not None
    pid = started._process.pid
    before = _peak_rss(pid)
    junk = bytes(200 << 20)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    for _ in range(5):
        sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
        sock.linger = 0
        monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            sock.connect(rc.info.hub_url)
            sock.send(junk, copy=False)
            _disconnected(monitor)
        finally:
            sock.disable_monitor()
            monitor.close(linger=0)
            sock.close(linger=0)
    del junk
    # It serves on: a signed request on a new connection is answered, and engines work.
    session = Session(rc.info.key)
    hub: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
    hub.linger = 0
    try:
        hub.connect(rc.info.hub_url)
        good = session.message("connection_request", {})
        hub.send_multipart(session.serialize(good))
        assert hub.poll(TIMEOUT_MS), "the hub stopped answering"
        reply = session.deserialize(hub.recv_multipart()).message
        assert reply.content["status"] == "ok"
    finally:
        hub.close(linger=0)
    assert rc[0].apply_sync(os.getpid) == rc._records[0].pid
    grown = _peak_rss(pid) - before
    assert grown < 50 << 20, f"the controller's peak memory grew by {grown >> 20} MiB"


def _recorded(other: Client, msg_ids: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while set(other.result_status(msg_ids)["completed"]) != set(msg_ids):
        assert time.monotonic() < deadline, "the records never reached the controller"


@pytest.fixture
def other(cluster: tuple[Cluster, Client]) -> Iterator[Client]:
    """A second client: it reads results from the controller's records, not from memory."""
    started, _ = cluster
    assert started.cluster_file is not None
    client = Client(started.cluster_file)
    try:
        yield client
    finally:
        client.close()


def test_a_task_whose_record_is_over_the_limit_is_recorded_in_parts(
    cluster: tuple[Cluster, Client], other: Client
) -> None:
    # Its request (900 KB of arguments, under LOOM_RECORD_REQUEST_LIMIT) and its result
    # (900 KB) together are over the hub's 1 MiB: sent whole, libzmq would drop the
    # engine's connection and the batch; the link sends them as two batches.
    _, rc = cluster
    data = b"x" * 900_000
    ar = rc[0].apply_async(bytes.upper, data)
    assert ar.get(timeout=30) == data.upper()
    _recorded(other, ar.msg_ids)
    assert other.get_result(ar.msg_ids[0]).get(timeout=10) == data.upper()
    [record] = other.db_query({"msg_id": ar.msg_ids[0]}, keys=["metadata", "buffers"])
    assert "loom_buffers_omitted" not in record["metadata"]
    assert other.resubmit(ar.msg_ids[0]).get(timeout=30) == data.upper()  # all kept


def test_a_result_over_the_limit_is_recorded_without_its_value_and_says_so(
    cluster: tuple[Cluster, Client], other: Client
) -> None:
    # Under LOOM_RECORD_RESULT_LIMIT (16 MiB), over the hub's limit: slimmed by the link.
    _, rc = cluster
    ar = rc[0].apply_async(bytes, 2_000_000)
    assert ar.get(timeout=30) == bytes(2_000_000)  # the client that sent it has it
    _recorded(other, ar.msg_ids)
    with pytest.raises(RemoteError, match=r"its result \(2,000,0\d\d bytes\) was larger"):
        other.get_result(ar.msg_ids[0]).get(timeout=10)
    assert rc[0].apply_sync(pow, 2, 10) == 1024  # the link and the engine work on


def test_a_task_whose_error_message_is_huge_is_recorded_cut_and_says_so(
    cluster: tuple[Cluster, Client], other: Client
) -> None:
    _, rc = cluster
    source = "def fail(n):\n    raise ValueError('e' * n)\n"
    fail = main_function(source, "fail")
    ar = rc[0].apply_async(fail, 3_000_000)
    with pytest.raises(RemoteError) as sent:
        ar.get(timeout=30)
    assert len(str(sent.value.evalue)) == 3_000_000  # the client that sent it: all of it
    _recorded(other, ar.msg_ids)
    with pytest.raises(RemoteError, match=r"ValueError") as recorded:
        other.get_result(ar.msg_ids[0]).get(timeout=10)
    evalue = str(recorded.value.evalue)
    assert evalue.startswith("eeee")
    assert evalue.endswith("more characters not recorded]")
    assert len(evalue) < LIMIT
    [record] = other.db_query({"msg_id": ar.msg_ids[0]}, keys=["result_metadata"])
    assert record["result_metadata"]["loom_record_truncated"] > 3_000_000


def _item(kind: str, msg_id: str, size: int, **fields: Any) -> Item:
    record: JSONDict = {"kind": kind, "msg_id": msg_id, **fields}
    return (record, [bytes(size)] if size else [], None)


def test_fit_batch_keeps_order_cuts_at_the_budget_and_slims_what_cannot_fit() -> None:
    budget = 100_000
    done: list[str] = []
    batch = [
        _item("task", "a", 40_000),
        _item("result", "a", 40_000),
        _item("task", "b", 40_000),
        _item("result", "b", 150_000),  # alone over: its buffers go
        _item("result", "c", 0, result_content={"evalue": "e" * 500_000, "tb": ["l"] * 10**5}),
        ({"kind": "result", "msg_id": "m" * 200_000}, [], lambda: done.append("dropped")),
    ]
    parts = fit_batch(batch, budget)
    assert [[item[0]["msg_id"] for item in part] for part in parts] == [["a", "a"], ["b", "b", "c"]]
    for part in parts:
        assert batch_size(*encode_batch(part)) <= budget
    b_result = parts[1][1]
    assert b_result[1] == []
    assert b_result[0]["result_metadata"]["loom_result_omitted"] == 150_000
    c_result = parts[1][2][0]
    assert c_result["result_content"]["evalue"].endswith("more characters not recorded]")
    assert c_result["result_content"]["tb"][-1].endswith("more items not recorded]")
    assert c_result["result_metadata"]["loom_record_truncated"] > 500_000
    assert done == ["dropped"]  # a sync handler waiting for it is released
    assert truncated({"k": ["abcdef"] * 3}, 3, 2) == {
        "k": ["abc… [3 more characters not recorded]"] * 2 + ["… [1 more items not recorded]"]
    }


def test_a_setup_over_the_limit_is_refused_by_the_client_by_name(
    cluster: tuple[Cluster, Client],
) -> None:
    # Sent, libzmq would drop the client's connection to the hub and never answer.
    _, rc = cluster
    data = b"d" * (2 << 20)
    with pytest.raises(ValueError, match=r"more than it accepts.*LOOM_HUB_MAX_MESSAGE_SIZE"):
        rc.setup(lambda: len(data))
    assert rc.recorded_setup == []
    assert rc.setup("small = 1").get(timeout=30) is not None
    assert rc[0].pull("small", block=True) == 1
    rc.clear_setup()


@pytest.mark.parametrize(
    ("value", "why"), [("12 parsecs", "expected a size"), ("64K", "at least 1M")]
)
def test_a_bad_limit_stops_the_controller_with_one_line(
    value: str, why: str, tmp_path: Path
) -> None:
    env = {**os.environ, "LOOM_HUB_MAX_MESSAGE_SIZE": value}
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "parallel.controller"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"loom controller: LOOM_HUB_MAX_MESSAGE_SIZE: {why}")
    assert line.endswith(f"got {value!r}")
    assert list(tmp_path.iterdir()) == []
