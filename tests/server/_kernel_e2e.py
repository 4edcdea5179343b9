"""Shared harness for the end-to-end tests of Loom's kernel (``test_kernel_*.py``).

Every test runs one scenario in a fresh event loop bounded by ``asyncio.timeout``
(``run`` from ``tests/_support.py``); each kernel process it starts is registered
with a ``Reaper`` (from there too) that kills it by PID afterwards, whatever
happened. Waits are for events (a message, a process exit), each with a timeout;
nothing sleeps in place of an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
from _support import Reaper, is_gone

from kernel import KernelClient, KernelManager, builtin_loom_spec, start_kernel
from kernel.protocol import ConnectionInfo, Message

REPO_ROOT = Path(__file__).resolve().parents[2]


def isolate_kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Kernels started by the test keep their history and connection files in ``tmp_path``."""
    monkeypatch.setenv("LOOM_HISTORY_FILE", str(tmp_path / "history.sqlite"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.delenv("PYTHONASYNCIODEBUG", raising=False)
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO_ROOT), path) if p))


@dataclass
class Kernel:
    manager: KernelManager
    client: KernelClient
    pid: int
    info: ConnectionInfo
    log: IopubLog


@asynccontextmanager
async def loom_kernel(reaper: Reaper) -> AsyncIterator[Kernel]:
    """A running Loom kernel and a ready client; afterwards the process is gone."""
    async with start_kernel(spec=builtin_loom_spec(), startup_timeout=30) as (manager, client):
        pid = reaper.track_manager(manager)
        log = IopubLog.attach(client)
        # iopub is ordered: once this request's idle is in, so is any stray status of
        # the readiness handshake, which would otherwise look like an unbracketed request.
        await client.kernel_info_request(timeout=10)
        log.messages.clear()
        yield Kernel(manager, client, pid, manager.info, log)
    assert is_gone(pid)


@dataclass
class IopubLog:
    """Every iopub message a client receives, in arrival order.

    ``on_output`` of a request must be :meth:`add` (use ``log.add`` as the
    handler); statuses and foreign output are recorded through the client's hooks.
    """

    messages: list[Message] = field(default_factory=list)
    _waiters: list[tuple[Callable[[Message], bool], asyncio.Future[Message]]] = field(
        default_factory=list
    )

    @classmethod
    def attach(cls, client: KernelClient) -> IopubLog:
        log = cls()
        client.on_status = lambda state, msg: log.add(msg)
        client.on_foreign_output = lambda msg, own: log.add(msg)
        return log

    def add(self, message: Message) -> None:
        self.messages.append(message)
        for waiter in list(self._waiters):
            predicate, future = waiter
            if not future.done() and predicate(message):
                future.set_result(message)
                self._waiters.remove(waiter)

    def for_parent(self, msg_id: str) -> list[Message]:
        return [m for m in self.messages if m.parent_id == msg_id]

    async def wait_for(self, predicate: Callable[[Message], bool], timeout: float) -> Message:
        """The first message (already received or future) that satisfies ``predicate``."""
        for message in self.messages:
            if predicate(message):
                return message
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        async with asyncio.timeout(timeout):
            return await future


def assert_bracketed(log: IopubLog, reply: Message) -> list[Message]:
    """The request answered by ``reply`` got exactly one busy first and one idle last."""
    seen = log.for_parent(reply.parent_id or "")
    states = [m.content["execution_state"] for m in seen if m.msg_type == "status"]
    assert states == ["busy", "idle"], (reply.parent_header.get("msg_type"), states)
    assert (seen[0].msg_type, seen[0].content.get("execution_state")) == ("status", "busy")
    assert (seen[-1].msg_type, seen[-1].content.get("execution_state")) == ("status", "idle")
    return seen[1:-1]


def kill_and_reap(popen: subprocess.Popen[bytes]) -> None:
    """Kill ``popen`` by PID unless it is already reaped; close our end of its stdin."""
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(popen.pid, signal.SIGKILL)
        popen.wait()
    if popen.stdin is not None:
        popen.stdin.close()


async def wait_exit(pid: int, timeout: float) -> None:
    """Return once process ``pid`` (a child or not) has exited; else ``TimeoutError``."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
    try:
        async with asyncio.timeout(timeout):
            await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


async def read_line(stream: asyncio.StreamReader, timeout: float) -> str:
    async with asyncio.timeout(timeout):
        line = await stream.readline()
    if not line:
        raise EOFError("the process closed its output")
    return line.decode().rstrip("\n")


async def pipe_reader(pipe: Any) -> asyncio.StreamReader:
    """An asyncio reader for a subprocess pipe (no child watcher, hence no thread)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 << 20)  # JSON reports are long lines
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader


def spawn_kernel(
    connection_file: Path, stderr_path: Path, reaper: Reaper
) -> subprocess.Popen[bytes]:
    """``python -m kernel -f FILE`` with stderr going to ``stderr_path``."""
    with stderr_path.open("wb") as stderr:
        popen = subprocess.Popen(
            [sys.executable, "-m", "kernel", "-f", str(connection_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    reaper.track_popen(popen)
    return popen


@asynccontextmanager
async def spawned_kernel(
    tmp_path: Path, reaper: Reaper
) -> AsyncIterator[tuple[subprocess.Popen[bytes], ConnectionInfo]]:
    """``python -m kernel -f`` on a connection file the kernel writes itself (stderr to
    ``tmp_path / "kernel-stderr.log"``), once it says it started; killed and reaped after."""
    connection_file = tmp_path / "kernel.json"
    popen = spawn_kernel(connection_file, tmp_path / "kernel-stderr.log", reaper)
    try:
        stdout = await pipe_reader(popen.stdout)
        assert "Loom kernel started" in await read_line(stdout, 30)
        yield popen, ConnectionInfo.read(connection_file)
    finally:
        kill_and_reap(popen)


async def hb_ping(info: ConnectionInfo, payload: bytes = b"ping", timeout: float = 1.0) -> None:
    """A fresh REQ socket's ping is echoed by the kernel's heartbeat within ``timeout``."""
    sock = zmq.asyncio.Context.instance().socket(zmq.REQ)
    sock.linger = 0
    sock.connect(info.url("hb"))
    try:
        async with asyncio.timeout(timeout):
            await sock.send(payload)
            assert await sock.recv() == payload
    finally:
        sock.close(linger=0)


def raw_socket(info: ConnectionInfo, channel: str, kind: int = zmq.DEALER) -> zmq.asyncio.Socket:
    sock = zmq.asyncio.Context.instance().socket(kind)
    sock.linger = 0
    sock.connect(info.url(channel))
    return sock


def stream_text(messages: list[Message], name: str = "stdout") -> str:
    return "".join(
        m.content["text"] for m in messages if m.msg_type == "stream" and m.content["name"] == name
    )
