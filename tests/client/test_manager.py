"""KernelManager against the real ipykernel: start, execute, interrupt, restart, death, shutdown.

Each scenario runs in a fresh event loop bounded by ``asyncio.timeout``; every
kernel process is registered with a :class:`~_support.Reaper` that SIGKILLs and
reaps it by PID whatever happens, and afterwards no Python thread but the main one
may exist (the manager and the client must not start any): see ``tests/_support.py``.
"""

# Scenarios stat files and wait on a stopped child inline: these calls return
# at once, and a test may block its own loop for that long.
# ruff: noqa: ASYNC222, ASYNC240

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _support import Reaper, is_gone, run

import kernel.client._manager as manager_module
from kernel import (
    KernelDied,
    KernelError,
    KernelManager,
    KernelSpec,
    KernelStartError,
    connect_client,
    get_kernel_spec,
    start_kernel,
)
from kernel.protocol import Message

pytestmark = pytest.mark.peer


def tiny_spec(tmp_path: Path, code: str, **kw: Any) -> KernelSpec:
    """A kernelspec whose "kernel" is ``python -c code connection_file``."""
    return KernelSpec("tiny", tmp_path, [sys.executable, "-c", code, "{connection_file}"], **kw)


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Connection files go to a private runtime dir, so leftovers are visible."""
    directory = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(directory))
    # ipykernel 7 cannot shut down gracefully in asyncio debug mode (its control
    # thread calls loop.call_later on the main loop, which debug mode forbids),
    # so a debug-mode test run must not hand that mode down to the kernels.
    monkeypatch.delenv("PYTHONASYNCIODEBUG", raising=False)
    return directory


def test_start_execute_shutdown(runtime_dir: Path) -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel() as (km, kc):
            pid = reaper.track_manager(km)
            path = km.connection_file
            assert path.parent == runtime_dir
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert km.info.kernel_name == "python3"
            outputs: list[Message] = []
            reply = await kc.execute("1+1", on_output=outputs.append, timeout=10)
            assert reply.content["status"] == "ok"
            results = [m for m in outputs if m.msg_type == "execute_result"]
            assert [m.content["data"]["text/plain"] for m in results] == ["2"]
        assert not path.exists()
        assert is_gone(pid)
        assert await km.wait_exit() == 0  # it obeyed the shutdown_request
        assert not km.is_alive()

    run(scenario)


def test_shutdown_without_client_is_graceful_and_idempotent(runtime_dir: Path) -> None:
    async def scenario(reaper: Reaper) -> None:
        async with KernelManager() as km:
            pid = reaper.track_manager(km)
            assert km.is_alive()
            await km.shutdown()  # asks through a short-lived client of its own
            assert await km.wait_exit() == 0
            assert is_gone(pid)
            await km.shutdown()
        assert list(runtime_dir.iterdir()) == []
        with pytest.raises(KernelError):
            _ = km.connection_file

    run(scenario)


def test_interrupt_by_signal_stops_a_sleeping_cell() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel() as (km, kc):
            reaper.track_manager(km)
            sleeping = asyncio.Event()

            def on_output(msg: Message) -> None:
                if msg.msg_type == "stream" and "sleeping" in msg.content.get("text", ""):
                    sleeping.set()

            code = "import time; print('sleeping', flush=True); time.sleep(60)"
            cell = asyncio.ensure_future(kc.execute(code, on_output=on_output))
            try:
                await sleeping.wait()
                started = time.monotonic()
                await km.interrupt()
                async with asyncio.timeout(5):
                    reply = await cell
            finally:
                cell.cancel()
            assert time.monotonic() - started < 5
            assert reply.content["status"] == "error"
            assert reply.content["ename"] == "KeyboardInterrupt"
            reply = await kc.execute("40 + 2", timeout=10)  # and it still works
            assert reply.content["status"] == "ok"

    run(scenario)


def test_interrupt_by_message() -> None:
    spec = dataclasses.replace(get_kernel_spec("python3"), interrupt_mode="message")

    async def scenario(reaper: Reaper) -> None:
        async with start_kernel(spec=spec) as (km, kc):
            reaper.track_manager(km)
            with pytest.raises(KernelError, match="a client is needed"):
                await km.interrupt()
            sleeping = asyncio.Event()
            code = "import time; print('sleeping', flush=True); time.sleep(60)"
            cell = asyncio.ensure_future(
                kc.execute(
                    code, on_output=lambda m: sleeping.set() if m.msg_type == "stream" else None
                )
            )
            try:
                await sleeping.wait()
                await km.interrupt(kc)
                async with asyncio.timeout(5):
                    reply = await cell
            finally:
                cell.cancel()
            assert reply.content["ename"] == "KeyboardInterrupt"

    run(scenario)


def test_restart_keeps_connection_and_clears_state() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel() as (km, kc):
            old_pid = reaper.track_manager(km)
            info, path = km.info, km.connection_file
            await kc.execute("x = 1", timeout=10)
            assert await km.restart(kc) == info
            new_pid = reaper.track_manager(km)
            assert new_pid != old_pid
            assert is_gone(old_pid)
            assert km.connection_file == path
            assert path.exists()
            reply = await kc.execute("x", timeout=10)
            assert reply.content["status"] == "error"
            assert reply.content["ename"] == "NameError"
            reply = await kc.execute("x = 2; x", timeout=10)
            assert reply.content["status"] == "ok"

    run(scenario)


def test_restart_now_fails_pending_requests() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel() as (km, kc):
            reaper.track_manager(km)
            busy = asyncio.Event()
            code = "import time; print('sleeping', flush=True); time.sleep(60)"
            cell = asyncio.ensure_future(
                kc.execute(code, on_output=lambda m: busy.set() if m.msg_type == "stream" else None)
            )
            try:
                await busy.wait()
                await km.restart(kc, now=True)
                reaper.track_manager(km)
                with pytest.raises(KernelDied):
                    await cell
            finally:
                cell.cancel()
            assert (await kc.execute("1", timeout=10)).content["status"] == "ok"

    run(scenario)


def test_wait_exit_learns_of_sigkill_promptly(runtime_dir: Path) -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel() as (km, _client):
            pid = reaper.track_manager(km)
            os.kill(pid, signal.SIGKILL)
            async with asyncio.timeout(2):
                code = await km.wait_exit()
            assert code == -signal.SIGKILL
            assert not km.is_alive()
            with pytest.raises(KernelDied):
                await km.interrupt()
        assert is_gone(pid)
        assert list(runtime_dir.iterdir()) == []

    run(scenario)


def test_stopped_kernel_is_recognised_and_still_shut_down() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel(shutdown_timeout=2) as (km, _client):
            pid = reaper.track_manager(km)
            proc = km.process
            assert proc is not None
            assert not proc.is_stopped()
            os.kill(pid, signal.SIGSTOP)
            # Blocks only until the stop takes effect (an event, not a sleep);
            # WNOWAIT leaves the state for nobody else to consume.
            os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOWAIT)
            assert proc.is_stopped()
            assert proc.is_alive()
            started = time.monotonic()
        assert time.monotonic() - started < 4
        assert is_gone(pid)

    run(scenario)


def test_kernel_that_exits_at_once_raises_start_error(tmp_path: Path, runtime_dir: Path) -> None:
    spec = tiny_spec(tmp_path, "import sys; print('boom', file=sys.stderr); sys.exit(3)")

    async def scenario(reaper: Reaper) -> None:
        km = KernelManager(spec=spec)
        with pytest.raises(KernelStartError) as info:
            await km.start(timeout=30)
        message = str(info.value)
        assert "exited with code 3 during startup (attempt 3 of 3)" in message
        assert "boom" in message
        assert km.process is None
        assert list(runtime_dir.iterdir()) == []

    run(scenario)


def test_start_timeout_kills_the_silent_kernel(tmp_path: Path, runtime_dir: Path) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    spec = tiny_spec(tmp_path, code)

    async def scenario(reaper: Reaper) -> None:
        km = KernelManager(spec=spec)
        with pytest.raises(KernelStartError, match="did not answer its heartbeat within 1"):
            await km.start(timeout=1)
        assert is_gone(int(pid_file.read_text()))
        assert list(runtime_dir.iterdir()) == []

    run(scenario)


def test_missing_executable_raises_start_error(tmp_path: Path) -> None:
    spec = KernelSpec("nope", tmp_path, [str(tmp_path / "no-such-kernel"), "{connection_file}"])

    async def scenario(reaper: Reaper) -> None:
        with pytest.raises(KernelStartError, match="cannot launch kernel 'nope'"):
            await KernelManager(spec=spec).start()

    run(scenario)


@pytest.mark.parametrize("launched", [False, True], ids=["started", "launched-then-started"])
def test_start_retries_when_a_port_was_taken(
    monkeypatch: pytest.MonkeyPatch, launched: bool
) -> None:
    """Simulate losing the port race: the first shell port is already bound by someone else."""
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    real_pick_ports = manager_module.pick_ports
    picks: list[list[int]] = []

    def pick_ports(ip: str = "127.0.0.1", count: int = 5) -> list[int]:
        ports = real_pick_ports(ip, count)
        if not picks:
            ports[0] = taken
        picks.append(ports)
        return ports

    monkeypatch.setattr(manager_module, "pick_ports", pick_ports)

    async def scenario(reaper: Reaper) -> None:
        km = KernelManager()
        try:
            if launched:
                km.launch()
                reaper.track_manager(km)
            info = await km.start()
            reaper.track_manager(km)
            assert len(picks) == 2
            assert info.shell_port != taken
        finally:
            await km.shutdown(now=True)

    try:
        run(scenario)
    finally:
        blocker.close()


def test_launch_spawns_at_once_and_start_waits_for_that_kernel(runtime_dir: Path) -> None:
    async def scenario(reaper: Reaper) -> None:
        km = KernelManager()
        info = km.launch()  # synchronous: the process runs on return
        pid = reaper.track_manager(km)
        assert km.is_alive()
        assert km.connection_file.exists()
        with pytest.raises(KernelError, match="already running"):
            km.launch()
        try:
            assert await km.start() == info  # waited for, not launched again
            assert km.process is not None
            assert km.process.pid == pid
            with pytest.raises(KernelError, match="already running"):
                await km.start()
            async with connect_client(info) as kc:
                reply = await kc.execute("x = 1", timeout=10)
                assert reply.content["status"] == "ok"
                await km.shutdown(kc)
        finally:
            await km.shutdown(now=True)
        assert is_gone(pid)
        assert list(runtime_dir.iterdir()) == []

    run(scenario)


def test_launch_of_a_missing_executable_raises_and_leaves_nothing(
    tmp_path: Path, runtime_dir: Path
) -> None:
    spec = KernelSpec("nope", tmp_path, [str(tmp_path / "no-such-kernel"), "{connection_file}"])
    km = KernelManager(spec=spec)
    with pytest.raises(KernelStartError, match="cannot launch kernel 'nope'"):
        km.launch()
    assert km.process is None
    assert not runtime_dir.exists() or list(runtime_dir.iterdir()) == []


def test_extra_env_and_cwd_reach_the_kernel(tmp_path: Path) -> None:
    async def scenario(reaper: Reaper) -> None:
        env = {"LOOM_TEST_VALUE": "hello"}
        async with start_kernel(extra_env=env, cwd=str(tmp_path)) as (km, kc):
            reaper.track_manager(km)
            code = (
                "import os; "
                "print(os.environ['LOOM_TEST_VALUE'], os.getcwd(), os.getpgid(0) == os.getpid())"
            )
            outputs: list[Message] = []
            await kc.execute(code, on_output=outputs.append, timeout=10)
            text = "".join(m.content.get("text", "") for m in outputs if m.msg_type == "stream")
            assert text.split() == ["hello", str(tmp_path), "True"]

    run(scenario)
