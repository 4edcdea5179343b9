"""A Loom kernel restarted with the same key refuses a message captured before the
restart (issue 12; ipykernel re-executes it): the header date check of
kernel/protocol/_freshness.py, with a real kernel process killed and started again on
the same connection file."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import zmq.asyncio
from _kernel_e2e import REPO_ROOT, hb_ping, kill_and_reap, pipe_reader, raw_socket, read_line
from _kernel_e2e import spawn_kernel as spawn
from _support import Reaper, run

from kernel.protocol import ConnectionInfo, Message, Session
from kernel.protocol._freshness import DEFAULT_SKEW, dated_before, replay_skew

pytestmark = pytest.mark.timeout(60)


def test_dated_before_reads_the_spec_date_forms() -> None:
    at = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    assert dated_before("2027-01-15T07:59:59.999999Z", at)
    assert not dated_before("2027-01-15T08:00:00.000001Z", at)
    assert dated_before("2027-01-15T09:59:59+02:00", at)  # an offset other than UTC
    assert dated_before("2027-01-15T07:59:59", at)  # no offset: UTC, as the spec asks
    for undecidable in (None, 12, "", "yesterday"):
        assert not dated_before(undecidable, at)


def test_replay_skew_from_the_environment() -> None:
    assert replay_skew({}) == DEFAULT_SKEW
    assert replay_skew({"LOOM_REPLAY_SKEW": "0.5"}) == 0.5
    for bad, says in (("abc", "a number of seconds"), ("-1", ">= 0"), ("nan", ">= 0")):
        with pytest.raises(ValueError, match=f"LOOM_REPLAY_SKEW must be {says}"):
            replay_skew({"LOOM_REPLAY_SKEW": bad})


def test_a_bad_skew_stops_the_kernel_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kernel", "-f", str(tmp_path / "k.json")],
        env={**os.environ, "LOOM_REPLAY_SKEW": "soon"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "loom kernel: LOOM_REPLAY_SKEW must be a number of seconds, got 'soon'\n"
    )


def execute_request(session: Session, code: str) -> Message:
    return session.message(
        "execute_request",
        {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    )


async def reply_to(sock: zmq.asyncio.Socket, session: Session) -> Message:
    async with asyncio.timeout(20):
        frames = await sock.recv_multipart()
    return session.deserialize(frames).message


async def wait_listening(info: ConnectionInfo) -> None:
    """Until the heartbeat answers: the kernel has recorded its start time by then."""
    for _ in range(30):
        try:
            await hb_ping(info, timeout=1.0)
            return
        except TimeoutError:
            continue
    raise TimeoutError("the restarted kernel's heartbeat never answered")


def test_a_message_captured_before_a_restart_is_refused_by_the_restarted_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No allowance: the capture is a fraction of a second older than the restart.
    monkeypatch.setenv("LOOM_REPLAY_SKEW", "0")
    connection_file = tmp_path / "kernel.json"
    marker = tmp_path / "ran"

    async def scenario(reaper: Reaper) -> None:
        first = spawn(connection_file, tmp_path / "first.log", reaper)
        try:
            assert "Loom kernel started" in await read_line(await pipe_reader(first.stdout), 30)
            info = ConnectionInfo.read(connection_file)
            client = Session(info.key, info.signature_scheme)
            captured = client.serialize(
                execute_request(client, f"open({str(marker)!r}, 'a').write('captured ')")
            )
            sock = raw_socket(info, "shell")
            await sock.send_multipart(captured)
            assert (await reply_to(sock, client)).content["status"] == "ok"
            sock.close(linger=0)
        finally:
            kill_and_reap(first)
        assert marker.read_text() == "captured "

        # The same file: same ports, same key (as jupyter_client's restart does).
        second = spawn(connection_file, tmp_path / "second.log", reaper)
        try:
            await wait_listening(info)
            sock = raw_socket(info, "shell")
            await sock.send_multipart(captured)  # the replay
            fresh = execute_request(client, f"open({str(marker)!r}, 'a').write('fresh')")
            await sock.send_multipart(client.serialize(fresh))
            reply = await reply_to(sock, client)  # one socket: the replay was handled first
            assert reply.parent_header["msg_id"] == fresh.msg_id  # no reply to the replay
            assert reply.content["status"] == "ok"
            sock.close(linger=0)
        finally:
            kill_and_reap(second)
            if second.stdout is not None:
                second.stdout.close()  # never read: it prints nothing on a file it did not write
        assert marker.read_text() == "captured fresh"  # the replay did not run again
        assert "older than this process's start" in (tmp_path / "second.log").read_text()

    run(scenario)
