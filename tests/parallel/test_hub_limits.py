"""The controller's hub holds bounded memory whatever a peer sends (issue 12), and no
legitimate peer is cut off by its frame limit (``parallel.protocol._hub_limits``).

One cluster for the module: one engine, plaintext tcp on loopback (where anyone on the
host reaches the hub), the hub's limit at its 1 MiB minimum so that records over it are
cheap to make."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from _cluster_support import running_cluster

from kernel.protocol import Session
from parallel import Client, Cluster
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
    for bad, why in [("12 parsecs", "expected a size"), ("64K", "at least 1M")]:
        with pytest.raises(ValueError, match=f"^LOOM_HUB_MAX_MESSAGE_SIZE: {why}"):
            hub_max_message_size({"LOOM_HUB_MAX_MESSAGE_SIZE": bad})


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
