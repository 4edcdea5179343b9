"""What an unauthenticated peer can make Loom's kernel hold is bounded (issue 15 item 18).

Junk sent without the key piles up where the kernel does not read: stdin outside
``input()``, shell while a cell runs. Before the limits, 400 MB sent meant +401 MB of
kernel memory. Now each peer can have only ``LOOM_RECEIVE_HWM`` messages queued (libzmq
stops reading its connection, nothing is dropped) of at most ``LOOM_MAX_MESSAGE_SIZE``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
from _kernel_e2e import REPO_ROOT, isolate_kernel_env, loom_kernel
from _support import Reaper, run
from zmq.utils.monitor import parse_monitor_message

from kernel.protocol import ConnectionInfo, Message, Session
from kernel.transport import SocketLimits, SocketLimitsError
from kernel.transport._limits import MAX_STREAM_MESSAGE_BYTES, parse_size

TIMEOUT = 60.0
MIB = 1 << 20
JUNK_MESSAGES = 200  # of 1 MiB each, per socket: +400 MiB before the limits


@pytest.fixture(autouse=True)
def _kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_kernel_env(monkeypatch, tmp_path)


# -- settings --------------------------------------------------------------------------


def test_limits_default_and_come_from_the_environment() -> None:
    defaults = SocketLimits.from_env({})
    assert defaults == SocketLimits()
    assert defaults.max_message_size == 128 * MIB  # an engine's 100 MB push fits
    assert defaults.control_max_message_size == 16 * MIB
    assert defaults.iopub_sndhwm == (512 * MIB) // MAX_STREAM_MESSAGE_BYTES
    custom = SocketLimits.from_env(
        {
            "LOOM_MAX_MESSAGE_SIZE": "1G",
            "LOOM_RECEIVE_HWM": "0",
            "LOOM_IOPUB_QUEUE_BYTES": "0",
            "LOOM_IOPUB_QUEUE": "500",
        }
    )
    assert custom == SocketLimits(1 << 30, 0, 0, 500)
    assert custom.iopub_sndhwm == 500
    assert SocketLimits(max_message_size=0).control_max_message_size == 16 * MIB
    assert SocketLimits(iopub_queue_bytes=0, iopub_queue_messages=0).iopub_sndhwm == 0


@pytest.mark.parametrize(
    ("text", "size"), [("0", 0), ("4096", 4096), ("64K", 64 << 10), ("128MiB", 128 * MIB)]
)
def test_sizes_are_read_in_powers_of_1024(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_an_unreadable_limit_names_the_variable_and_the_value() -> None:
    with pytest.raises(SocketLimitsError, match=r"^LOOM_MAX_MESSAGE_SIZE: .*got '12 parsecs'"):
        SocketLimits.from_env({"LOOM_MAX_MESSAGE_SIZE": "12 parsecs"})
    with pytest.raises(SocketLimitsError, match=r"^LOOM_RECEIVE_HWM: expected a whole number"):
        SocketLimits.from_env({"LOOM_RECEIVE_HWM": "-3"})


def test_a_kernel_with_an_unreadable_limit_says_which_and_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "LOOM_RECEIVE_HWM": "lots"}
    done = subprocess.run(
        [sys.executable, "-m", "kernel", "-f", str(tmp_path / "k.json")],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,  # run() kills it if it hangs
    )
    assert done.returncode == 2
    assert done.stderr == (
        "loom kernel: LOOM_RECEIVE_HWM: expected a whole number (0: no limit), got 'lots'\n"
    )
    assert not (tmp_path / "k.json").exists()


# -- a real kernel under junk ------------------------------------------------------------


def peak_rss(pid: int) -> int:
    """The process's peak resident set size in bytes (VmHWM): it catches what was held
    at any moment, not only now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


class RawClient:
    """A client of our own on shell and stdin (one identity), so that junk and a signed
    message can share a connection: the kernel reading the signed one proves it has taken
    in all the junk sent before it."""

    def __init__(self, info: ConnectionInfo) -> None:
        self.session = Session(info.key, info.signature_scheme)
        ctx = zmq.asyncio.Context.instance()
        identity = os.urandom(8).hex().encode()
        self.sockets: dict[str, zmq.asyncio.Socket] = {}
        for channel in ("shell", "stdin"):
            sock = ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.sndhwm = 0  # the junk waits here, not in the test's send()
            sock.identity = identity
            sock.connect(info.url(channel))
            self.sockets[channel] = sock

    async def send(self, channel: str, message: Message) -> None:
        await self.sockets[channel].send_multipart(self.session.serialize(message))

    async def send_junk(self, channel: str, count: int) -> None:
        junk = b"\0" * MIB
        for _ in range(count):
            await self.sockets[channel].send_multipart([b"<IDS|MSG>", junk])

    async def recv(self, channel: str, msg_type: str) -> Message:
        async with asyncio.timeout(TIMEOUT):
            while True:
                frames = await self.sockets[channel].recv_multipart()
                message = self.session.deserialize(frames).message
                if message.msg_type == msg_type:
                    return message

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(linger=0)


@pytest.mark.timeout(180)
def test_junk_on_stdin_and_on_shell_during_a_cell_costs_the_kernel_little_memory() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            raw = RawClient(k.info)
            try:
                await k.client.execute("import time", timeout=TIMEOUT)
                before = peak_rss(k.pid)
                # stdin, while no input() waits: nobody reads it.
                await raw.send_junk("stdin", JUNK_MESSAGES)
                execute = raw.session.message(
                    "execute_request", {"code": "answer = input()", "allow_stdin": True}
                )
                await raw.send("shell", execute)
                request = await raw.recv("stdin", "input_request")
                # shell, while that cell runs: nobody reads it either.
                await raw.send_junk("shell", JUNK_MESSAGES)
                info = raw.session.message("kernel_info_request")
                await raw.send("shell", info)
                reply = raw.session.message("input_reply", {"value": "42"}, parent=request.header)
                await raw.send("stdin", reply)
                # The input reply came after the stdin junk, kernel_info after the shell
                # junk, on the same connections: both answered means all junk went in.
                assert (await raw.recv("shell", "execute_reply")).content["status"] == "ok"
                assert (await raw.recv("shell", "kernel_info_reply")).content["status"] == "ok"
                grown = peak_rss(k.pid) - before
                # Each socket holds at most LOOM_RECEIVE_HWM (16) + 1 junk messages of
                # 1 MiB; 2 x 200 MiB were sent. Before the limits: +400 MiB.
                assert grown < 80 * MIB, f"the kernel's peak RSS grew by {grown / MIB:.0f} MiB"
                result = await k.client.execute("answer", timeout=TIMEOUT)
                assert result.content["status"] == "ok"
            finally:
                raw.close()

    run(scenario, timeout=170)


# -- iopub: stream messages and the queue of a subscriber that stopped reading -------------


def test_stream_messages_stay_under_64_kib_whatever_is_printed() -> None:
    # Before: one print of a long string was one message of any size, and a chunk of
    # 32 Ki control characters serialized to 192 KiB.
    texts = {"long": "y" * 1_000_000, "control": "\x01" * 100_000, "wide": "\U0001f600" * 50_000}

    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            session = Session(k.info.key, k.info.signature_scheme)
            sub = zmq.asyncio.Context.instance().socket(zmq.SUB)
            sub.linger = 0
            sub.rcvhwm = 0
            sub.subscribe(b"")
            sub.connect(k.info.url("iopub"))
            try:
                async with asyncio.timeout(TIMEOUT):
                    while session.deserialize(await sub.recv_multipart()).message.msg_type != (
                        "iopub_welcome"
                    ):
                        pass
                for name, text in texts.items():
                    reply = await k.client.execute(f"print({text!r}, end='')", timeout=TIMEOUT)
                    sizes, received = [], []
                    async with asyncio.timeout(TIMEOUT):
                        while True:
                            frames = await sub.recv_multipart()
                            message = session.deserialize(frames).message
                            if message.parent_id != reply.parent_id:
                                continue
                            if message.msg_type == "stream":
                                sizes.append(sum(map(len, frames)))
                                received.append(message.content["text"])
                            if message.content.get("execution_state") == "idle":
                                break
                    assert "".join(received) == text, name
                    assert max(sizes) <= MAX_STREAM_MESSAGE_BYTES, (name, max(sizes))
            finally:
                sub.close(linger=0)

    run(scenario, timeout=120)


@pytest.mark.timeout(180)
def test_a_subscriber_that_stopped_reading_costs_at_most_the_iopub_byte_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: iopub held 100,000 messages of up to 32 KiB for it (3.2 GiB; +658 MB was
    # measured at 20,000). Now LOOM_IOPUB_QUEUE_BYTES bounds it, here 16 MiB.
    monkeypatch.setenv("LOOM_IOPUB_QUEUE_BYTES", "16M")

    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            session = Session(k.info.key, k.info.signature_scheme)
            stalled = zmq.asyncio.Context.instance().socket(zmq.SUB)
            stalled.linger = 0
            stalled.rcvhwm = 1  # it takes in next to nothing: the kernel must hold the rest
            stalled.setsockopt(zmq.RCVBUF, 4096)
            stalled.subscribe(b"")
            stalled.connect(k.info.url("iopub"))
            try:
                async with asyncio.timeout(TIMEOUT):
                    welcome = session.deserialize(await stalled.recv_multipart()).message
                assert welcome.msg_type == "iopub_welcome"
                await k.client.execute("line = 'x' * 999", timeout=TIMEOUT)
                before = peak_rss(k.pid)
                # 100 MB of output, read by the client but never by the stalled subscriber.
                code = "for i in range(100_000): print(line)\n'done'"
                reply = await k.client.execute(code, timeout=120)
                assert reply.content["status"] == "ok"
                grown = peak_rss(k.pid) - before
                assert grown < 48 * MIB, f"the kernel's peak RSS grew by {grown / MIB:.0f} MiB"
            finally:
                stalled.close(linger=0)

    run(scenario, timeout=170)


def test_long_iopub_subscriptions_are_refused_and_short_ones_greeted_on_their_topic() -> None:
    # libzmq keeps each distinct topic in a trie at ~50 bytes per byte of topic: before
    # the 256-byte cap, 2,000 subscriptions of 1 KB (2 MB sent) cost the kernel ~150 MiB.
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            ctx = zmq.asyncio.Context.instance()
            before = peak_rss(k.pid)
            junk = ctx.socket(zmq.XSUB)
            junk.linger = 0
            junk.sndhwm = 0
            monitor = junk.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            topic = ctx.socket(zmq.SUB)
            topic.linger = 0
            try:
                junk.connect(k.info.url("iopub"))
                for _ in range(2000):
                    await junk.send(b"\x01" + os.urandom(500).hex().encode())
                async with asyncio.timeout(TIMEOUT):
                    event = parse_monitor_message(await monitor.recv_multipart())
                assert event["event"] == zmq.EVENT_DISCONNECTED  # the kernel hung up
                junk.disable_monitor()
                junk.close(linger=0)
                grown = peak_rss(k.pid) - before
                assert grown < 16 * MIB, f"the kernel's peak RSS grew by {grown / MIB:.0f} MiB"

                topic.subscribe(b"kernel.")
                topic.connect(k.info.url("iopub"))
                session = Session(k.info.key, k.info.signature_scheme)
                async with asyncio.timeout(TIMEOUT):
                    received = session.deserialize(await topic.recv_multipart())
                assert received.identities == [b"kernel."]
                assert received.message.msg_type == "iopub_welcome"
                assert received.message.content == {"subscription": "kernel."}
            finally:
                monitor.close(linger=0)
                junk.close(linger=0)
                topic.close(linger=0)

    run(scenario)
