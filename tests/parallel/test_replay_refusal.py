"""Replays refused across engines and restarts (issue 12); real processes, killed by PID.

A signed request captured on the wire (here: the exact frames Loom's client sent, or
that a Jupyter-style client sent) is replayed to another engine of the same cluster
(same key), to an engine killed and replaced under the same id, and to a controller
killed and restored: each refuses it (no reply, nothing runs, a log line) and serves on.
The rules are ``kernel/protocol/_freshness.py``'s: requests from Loom's client and hub
name the engine's instance (new at each start); requests that name none (a Jupyter
client) and the hub's requests must be dated after the process started, minus
``LOOM_REPLAY_SKEW`` (0 here, so the test needs no wait).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from _cluster_support import isolate, main_function
from _support import wait_gone
from jupyter_client import BlockingKernelClient

import parallel.client._engine_link as engine_link
from kernel.protocol import Message, Session
from kernel.protocol._freshness import address_to
from parallel import Client, Cluster
from parallel.engine import engine_connection_file
from parallel.protocol._controller_info import ControllerInfo

pytestmark = pytest.mark.timeout(120)

TIMEOUT_MS = 20_000
MARK = main_function(
    """
    def mark(path):
        import os
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\\n")
        return os.getpid()
    """,
    "mark",
)


def _processes_of(path: Path) -> set[int]:
    """Processes whose command line names the cluster file (controllers, fork servers,
    engines)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(path).encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Cluster, Client, set[int], Path]]:
    pids: set[int] = set()
    tmp = tmp_path_factory.mktemp("replay-refusal")
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, tmp)
        # No allowance: a request signed before a process started is refused at once.
        monkeypatch.setenv("LOOM_REPLAY_SKEW", "0")
        started = Cluster(n=2, transport="tcp")  # tcp: anyone on the host can connect
        try:
            with started.start_and_connect_sync(timeout=60) as rc:
                assert started.cluster_file is not None
                pids |= _processes_of(started.cluster_file)
                yield started, rc, pids, tmp
        finally:
            started.stop_cluster_sync()
            for pid in pids:
                _kill(pid)


def _dealer(url: str) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(url)
    return sock


def _shell_url(rc: Client, engine_id: int) -> str:
    record = rc._records[engine_id]
    return rc.info.engine_connection(record.address, record.ports).url("shell")


def _answered_only(sock: zmq.Socket[bytes], session: Session, fresh: Message) -> list[str]:
    """Send ``fresh`` after whatever was sent on ``sock``; the parents of every reply read
    until ``fresh``'s (what the socket's earlier requests got answered, in order)."""
    sock.send_multipart(session.serialize(fresh))
    parents: list[str] = []
    while True:
        assert sock.poll(TIMEOUT_MS), f"no reply to {fresh.msg_type}"
        reply = session.deserialize(sock.recv_multipart()).message
        parents.append(reply.parent_id or "")
        if reply.parent_id == fresh.msg_id:
            return parents


def _engine_log(cluster: Cluster, rc: Client, engine_uuid: str) -> str:
    assert cluster.cluster_file is not None
    workdir = cluster.cluster_file.parent / f"loom-launch-{rc.info.cluster_id}"
    return (workdir / f"engine-{engine_uuid}.log").read_text(errors="replace")


def _refusals(cluster: Cluster, msg_id: str) -> list[str]:
    """The controller's log lines about message ``msg_id`` that its hub refused (its output
    so far). Other refusals are left out: an engine's record or ping queued in its socket
    while the controller was dead arrives dated before the restored one's start and is
    refused too (the engine sends it again, freshly signed, once registered)."""
    assert cluster._process is not None
    output = cluster._process.output_tail(1_000_000)
    return [
        line
        for line in output.splitlines()
        if "dropped invalid message on hub" in line and msg_id in line
    ]


def _back(rc: Client, engine: int, old_pid: int, timeout: float = 30.0) -> bool:
    def replaced() -> bool:
        record = rc._records.get(engine)
        return record is not None and record.pid != old_pid

    return rc._pump.pump_until(replaced, timeout)


def test_a_captured_request_is_refused_by_another_engine_and_by_a_replacement(
    cluster: tuple[Cluster, Client, set[int], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started, rc, pids, _ = cluster
    marks = tmp_path / "marks"
    session = Session(rc.info.key)
    # Capture the frames Loom's client itself sends for an apply on engine 0.
    captured: list[list[bytes]] = []
    real_send = engine_link.send_or_fail

    def spy(sock: zmq.Socket[bytes], frames: list[bytes], **options: Any) -> None:
        captured.append([bytes(f) for f in frames])
        real_send(sock, frames, **options)

    monkeypatch.setattr(engine_link, "send_or_fail", spy)
    first_pid = rc[0].apply_sync(MARK, str(marks))
    monkeypatch.undo()
    apply_frames = next(f for f in captured if b'"msg_type":"apply_request"' in f[2])
    assert b'"loom_target"' in apply_frames[2]  # the engine's instance, in the signed header
    # And a Jupyter client's request (no instance named): it runs, as on any kernel.
    code = f"open({str(marks)!r}, 'a').write(f'{{__import__(\"os\").getpid()}}\\n')"
    jupyter_style = session.message("execute_request", {"code": code, "silent": False})
    execute_frames = session.serialize(jupyter_style)
    sock = _dealer(_shell_url(rc, 0))
    try:
        sock.send_multipart(execute_frames)
        fresh = session.message("kernel_info_request", {})
        assert _answered_only(sock, session, fresh) == [jupyter_style.msg_id, fresh.msg_id]
    finally:
        sock.close()
    assert marks.read_text().split() == [str(first_pid)] * 2

    # Engine 1 shares the key, has never seen the signature: it refuses what names engine 0.
    sock = _dealer(_shell_url(rc, 1))
    try:
        sock.send_multipart(apply_frames)
        fresh = session.message("kernel_info_request", {})
        assert _answered_only(sock, session, fresh) == [fresh.msg_id]
    finally:
        sock.close()
    assert marks.read_text().split() == [str(first_pid)] * 2
    said = _engine_log(started, rc, rc._records[1].uuid)
    assert "replayed from another engine, or from before a restart" in said

    # Engine 0 killed and replaced under the same id: the new process refuses both.
    old = rc._records[0].pid
    os.kill(old, signal.SIGKILL)
    assert wait_gone(old, 10)
    assert _back(rc, 0, old), "engine 0 was not replaced"
    assert started.cluster_file is not None
    pids |= _processes_of(started.cluster_file)
    sock = _dealer(_shell_url(rc, 0))
    try:
        sock.send_multipart(apply_frames)
        sock.send_multipart(execute_frames)
        fresh = session.message("kernel_info_request", {})
        assert _answered_only(sock, session, fresh) == [fresh.msg_id]
    finally:
        sock.close()
    assert marks.read_text().split() == [str(first_pid)] * 2
    said = _engine_log(started, rc, rc._records[0].uuid)
    assert "older than this process's start" in said
    # The client's own requests to the new process run (they name its instance).
    new_pid = rc[0].apply_sync(MARK, str(marks))
    assert new_pid == rc._records[0].pid != old
    assert marks.read_text().split() == [str(first_pid)] * 2 + [str(new_pid)]
    # jupyter_client attached to the new engine as to a kernel (it names no instance, and
    # its requests are dated now): served as before.
    client = BlockingKernelClient()
    client.load_connection_file(str(engine_connection_file(rc.info, 0)))
    client.start_channels()
    try:
        reply = client.execute_interactive("import os; os.getpid()", timeout=20)
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()


def test_a_restored_controller_refuses_a_request_signed_before_it_started(
    cluster: tuple[Cluster, Client, set[int], Path],
) -> None:
    first, rc, pids, _ = cluster
    path = first.cluster_file
    assert path is not None
    assert first._process is not None
    session = Session(rc.info.key)
    hub = _dealer(rc.info.hub_url)
    try:  # a client records setup (targets: none, so it runs nowhere): captured
        setup = session.message("setup_request", {"code": "x = 1", "targets": []})
        setup_frames = session.serialize(setup)
        hub.send_multipart(setup_frames)
        fresh = session.message("connection_request", {})
        assert _answered_only(hub, session, fresh) == [setup.msg_id, fresh.msg_id]
    finally:
        hub.close()
    pids |= _processes_of(path)
    first_copy = path.with_name("first-controller.json")
    shutil.copy(path, first_copy)
    _kill(first._process.pid)
    assert wait_gone(first._process.pid, 10)

    restored = Cluster(restore=path)
    try:
        rc2 = restored.restore_sync(timeout=15)
        assert restored._process is not None
        pids |= _processes_of(path)
        assert [item["summary"] for item in rc2.recorded_setup] == ["x = 1"]
        old_instance = ControllerInfo.read(first_copy).instance
        assert rc2.info.instance
        assert rc2.info.instance != old_instance  # a new one at each start
        hub = _dealer(rc2.info.hub_url)
        try:  # the new controller has not seen the signature; the date gives it away
            hub.send_multipart(setup_frames)
            fresh = session.message("connection_request", {})
            assert _answered_only(hub, session, fresh) == [fresh.msg_id]
            # Said once, in one line that names what was refused and why.
            said = _refusals(restored, setup.msg_id)
            assert len(said) == 1, said
            assert f"setup_request {setup.msg_id}: " in said[0]
            assert "older than this process's start" in said[0]
            # A flood of the same replay is rate-limited (a burst of lines, then a count),
            # and the hub serves on.
            for _ in range(20):
                hub.send_multipart(setup_frames)
            fresh = session.message("connection_request", {})
            assert _answered_only(hub, session, fresh) == [fresh.msg_id]
            # (The limit is per hub, not per message: an engine's stale record may have
            # taken a line of the burst, so the flood's own lines are at most, not exactly.)
            flood = _refusals(restored, setup.msg_id)[1:]
            assert len(flood) <= 5, flood
            assert all(f"setup_request {setup.msg_id}: " in line for line in flood)
            # A peer whose clock is an hour behind: refused unless it names this start's
            # instance (what engines and clients that read the cluster file do).
            for named, answered in (("", False), (rc2.info.instance, True)):
                late = session.message("connection_request", {})
                late.header["date"] = "2000-01-01T00:00:00Z"
                address_to(late.header, named)
                hub.send_multipart(session.serialize(late))
                fresh = session.message("connection_request", {})
                expected = [late.msg_id, fresh.msg_id] if answered else [fresh.msg_id]
                assert _answered_only(hub, session, fresh) == expected
        finally:
            hub.close()
        with Client(path) as other:
            assert [item["summary"] for item in other.recorded_setup] == ["x = 1"]
        assert rc2[:].apply_sync(os.getpid) == [rc2._records[i].pid for i in (0, 1)]
        rc2.close()
    finally:
        restored.stop_cluster_sync()
        pids |= _processes_of(path)
