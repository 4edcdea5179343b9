"""The kernel server as a library (the parallel engine's seam), in a real process.

``open_kernel_sockets`` + ``start_io`` + ``serve(setup=...)`` run a kernel with an extra
handler, without writing a connection file and without ending the process: ``serve``
returns, and every process-wide change it made (``sys.stdout``, fds 1 and 2, SIGINT) is
undone, which the child proves by printing to its real stdout afterwards.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _kernel_e2e import (
    REPO_ROOT,
    isolate_kernel_env,
    kill_and_reap,
    pipe_reader,
    read_line,
    spawn_kernel,
    spawned_kernel,
    wait_exit,
)
from _support import Reaper, run

from kernel import connect_client
from kernel.protocol import ConnectionInfo, runtime_dir
from kernel.server._app import plaintext_warning

TIMEOUT = 30.0

CHILD = r"""
import asyncio, json, signal, sys
from kernel.protocol import ConnectionInfo, Message, Reply
from kernel.server import serve, start_io
from kernel.transport import open_kernel_sockets

async def echo(request: Message, identities: list[bytes]) -> Reply:
    # A handler added by composition, answering with buffers (an apply_reply's shape).
    doubled = [bytes(b) * 2 for b in request.buffers]
    return Reply({"status": "ok", "n": len(doubled)}, {"engine": "e0"}, doubled)

def setup(server):
    server.shell_handlers["echo_request"] = echo

before = signal.getsignal(signal.SIGINT)
sockets = open_kernel_sockets(ConnectionInfo(key=b"secret"))
print(json.dumps(sockets.info.to_dict() | {"key": "secret"}), flush=True)
iothread = start_io(sockets)
code = asyncio.run(serve(sockets, iothread, setup=setup))
sockets.close()
restored = sys.stdout is sys.__stdout__ and signal.getsignal(signal.SIGINT) is before
print(f"served code={code} restored={restored}", flush=True)
"""


@pytest.fixture(autouse=True)
def _kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_kernel_env(monkeypatch, tmp_path)


def _spawn_child(reaper: Reaper) -> subprocess.Popen[bytes]:
    popen = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    reaper.track_popen(popen)
    return popen


def test_serve_runs_an_extra_handler_returns_and_undoes_its_process_effects() -> None:
    async def scenario(reaper: Reaper) -> None:
        popen = _spawn_child(reaper)
        try:
            stdout = await pipe_reader(popen.stdout)
            data = json.loads(await read_line(stdout, TIMEOUT))
            info = ConnectionInfo.from_dict(data)
            async with connect_client(info) as client:
                reply = await client.request(
                    "echo_request", {}, buffers=[b"ab", b"c"], timeout=TIMEOUT
                )
                assert reply.msg_type == "echo_reply"
                assert reply.content == {"status": "ok", "n": 2}
                assert reply.metadata["engine"] == "e0"
                assert reply.buffers == [b"abab", b"cc"]
                await client.shutdown(timeout=TIMEOUT)
            # Printed after serve() returned: fd 1 is the real pipe again.
            assert await read_line(stdout, TIMEOUT) == "served code=0 restored=True"
            await wait_exit(popen.pid, TIMEOUT)
            assert popen.wait() == 0  # it has exited by itself: no os._exit, status 0
            assert not list(runtime_dir().glob("kernel-*.json"))  # no connection file
        finally:
            kill_and_reap(popen)

    run(scenario)


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_a_kernel_shut_down_by_request_leaves_only_the_plaintext_warning_on_stderr(
    tmp_path: Path, transport: str
) -> None:
    # end_process once closed the heartbeat socket under the zmq.proxy still running on it,
    # and every kernel printed a ZMQError traceback from loom-heartbeat as it ended.
    # Issue 15 item 24: on TCP the kernel says once that it serves plain text (ipykernel
    # does too); on ipc there is nothing to say.
    async def scenario(reaper: Reaper) -> None:
        async with contextlib.AsyncExitStack() as stack:
            if transport == "tcp":
                popen, info = await stack.enter_async_context(spawned_kernel(tmp_path, reaper))
            else:
                ports = dict(shell_port=1, iopub_port=2, stdin_port=3, control_port=4, hb_port=5)
                info = ConnectionInfo(transport="ipc", ip=str(tmp_path / "k"), key=b"k", **ports)
                info.write(tmp_path / "kernel.json")
                popen = spawn_kernel(
                    tmp_path / "kernel.json", tmp_path / "kernel-stderr.log", reaper
                )
                stack.callback(kill_and_reap, popen)
                if popen.stdout is not None:  # nothing is printed on ipc ports given
                    stack.callback(popen.stdout.close)
            async with connect_client(info) as client:
                assert (await client.execute("1", timeout=TIMEOUT)).content["status"] == "ok"
                await client.shutdown(timeout=TIMEOUT)
            await wait_exit(popen.pid, TIMEOUT)
        stderr = (tmp_path / "kernel-stderr.log").read_text()
        if transport == "ipc":
            assert stderr == ""
        else:
            assert stderr == f"{plaintext_warning(info)}\n"
            assert "plain TCP on 127.0.0.1" in stderr
            assert '"transport": "ipc"' in stderr

    run(scenario)
