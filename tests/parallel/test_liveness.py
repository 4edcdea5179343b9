"""How the hub tells a dead engine from a live one (``parallel.controller._liveness``).

- the heartbeat timeout: 3 s where every hop is local (ipc, loopback), 10 s over a
  network, a configured value wins, a bad one is a one-line error;
- the connection watch: a process that exits (SIGKILL) closes its connection and is
  reported at once; a stopped one (SIGSTOP) closes nothing and is left to the heartbeat;
  a peer that never answered is never reported;
- the heartbeats (one task for every engine): a peer that echoes is never silent, even
  when our loop was blocked past the grace; a stopped one is reported once, after the
  grace, and no longer watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from parallel.controller._liveness import (
    LOCAL_HEARTBEAT_TIMEOUT,
    REMOTE_HEARTBEAT_TIMEOUT,
    Heartbeats,
    heartbeat_timeout,
    watch_connection,
)

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("transport", "address", "expected"),
    [
        ("ipc", "/run/user/0/loom/e-1234", LOCAL_HEARTBEAT_TIMEOUT),
        ("tcp", "127.0.0.1", LOCAL_HEARTBEAT_TIMEOUT),
        ("tcp", "127.0.5.1", LOCAL_HEARTBEAT_TIMEOUT),
        ("tcp", "[::1]", LOCAL_HEARTBEAT_TIMEOUT),
        ("tcp", "localhost", LOCAL_HEARTBEAT_TIMEOUT),
        ("tcp", "10.9.0.2", REMOTE_HEARTBEAT_TIMEOUT),
        ("tcp", "node17.cluster", REMOTE_HEARTBEAT_TIMEOUT),
    ],
)
def test_the_timeout_is_short_on_this_machine_and_long_over_a_network(
    transport: str, address: str, expected: float
) -> None:
    assert heartbeat_timeout(transport, address) == expected


def test_a_configured_timeout_wins_and_a_bad_one_is_refused() -> None:
    assert heartbeat_timeout("tcp", "10.9.0.2", 1.5) == 1.5
    assert heartbeat_timeout("ipc", "x", 20) == 20.0
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="heartbeat timeout must be > 0 seconds"):
            heartbeat_timeout("tcp", "127.0.0.1", bad)


def _router(url: str, serve: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A process with a ROUTER bound at ``url`` running ``serve`` (Python, ``sock`` is
    the ROUTER) once bound; killed by PID (continued first, in case a test stopped it)."""
    code = "import sys, zmq\n"
    code += f"sock = zmq.Context().socket(zmq.ROUTER)\nsock.bind({url!r})\n"
    code += 'print("bound", flush=True)\n' + serve
    argv = [sys.executable, "-c", code]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == b"bound\n"
            yield process, url
        finally:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait(10)


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A process with a bound ROUTER (like an engine's heartbeat port) that never answers."""
    yield from _router(f"ipc://{tmp_path}/hb", "sys.stdin.read()\n")


async def _watch(url: str, act: Callable[[], object] | None, limit: float) -> bool:
    """Watch ``url``; once connected, call ``act``; whether the watch reported the peer
    gone within ``limit`` seconds (after connecting, or from the start if it never does)."""
    connected, gone = asyncio.Event(), asyncio.Event()
    watcher = asyncio.create_task(watch_connection(url, gone.set, on_connected=connected.set))
    try:
        if act is not None:
            async with asyncio.timeout(10):
                await connected.wait()
            act()
        async with asyncio.timeout(limit):
            await gone.wait()
        return True
    except TimeoutError:
        return False
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


def test_a_killed_peer_is_reported_gone_at_once(
    peer: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, url = peer
    assert asyncio.run(_watch(url, process.kill, 10.0))


def test_a_stopped_peer_is_not_reported_by_the_connection_watch(
    peer: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, url = peer
    stop = lambda: os.kill(process.pid, signal.SIGSTOP)  # noqa: E731
    # Bounded wait for an event that must not come: the heartbeat's job, not this one's.
    assert not asyncio.run(_watch(url, stop, 1.0))


def test_a_peer_that_never_listened_is_never_reported(tmp_path: Path) -> None:
    assert not asyncio.run(_watch(f"ipc://{tmp_path}/nobody", None, 1.0))


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A heartbeat port as an engine's: a ROUTER that echoes what it gets."""
    serve = "while True:\n    sock.send_multipart(sock.recv_multipart())\n"
    yield from _router(f"ipc://{tmp_path}/echo", serve)


def test_heartbeats_keep_an_echoing_peer_and_report_a_stopped_one_once(
    echo: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, url = echo
    interval, grace = 0.05, 0.3

    async def scenario() -> tuple[float, list[int]]:
        beats = Heartbeats(interval)
        silent: list[int] = []
        reported = asyncio.Event()

        def on_silent() -> None:
            silent.append(0)
            reported.set()

        beats.watch(0, url, grace, on_silent)
        beats.watch(1, f"{url}-nobody", 60.0, lambda: silent.append(1))  # never connects
        task = asyncio.create_task(beats.run())
        try:
            await asyncio.sleep(4 * grace)  # echoes come: not silent
            assert silent == []
            time.sleep(2 * grace)  # noqa: ASYNC251  # our loop blocked past the grace: echoes queue
            await asyncio.sleep(2 * interval)
            assert silent == []
            os.kill(process.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            async with asyncio.timeout(10):
                await reported.wait()
            waited = time.monotonic() - stopped
            await asyncio.sleep(4 * interval)  # reported once, then no longer watched
            assert beats.watched == frozenset({1})
            return waited, silent
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert beats.watched == frozenset()  # run() closed every socket on its way out

    waited, silent = asyncio.run(scenario())
    assert silent == [0]
    assert grace - interval <= waited < grace + 5.0  # 5 s: a loaded machine's scheduling


def test_a_cluster_takes_its_heartbeat_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from _cluster_support import _kill, isolate

    from parallel import Cluster

    isolate(monkeypatch, tmp_path)
    with pytest.raises(ValueError, match="heartbeat_timeout must be > 0 seconds, not 0"):
        Cluster(n=1, heartbeat_timeout=0)
    cluster = Cluster(n=1, heartbeat_timeout=1.0)
    pids: list[int] = []
    try:
        client = cluster.start_and_connect_sync(timeout=60)
        assert cluster._process is not None
        pids.append(cluster._process.pid)
        (engine,) = client.ids
        pids.append(client._records[engine].pid)
        os.kill(pids[-1], signal.SIGSTOP)
        lost = lambda: engine not in client._links  # noqa: E731
        assert client._pump.pump_until(lost, 10), "not lost within 10 s"
        assert "silent for 1 s" in client._lost[engine]
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        cluster.stop_cluster_sync()
        for pid in pids:
            _kill(pid)


def test_the_controller_refuses_a_bad_heartbeat_timeout() -> None:
    argv = [sys.executable, "-P", "-m", "parallel.controller", "--heartbeat-timeout", "-1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "--heartbeat-timeout must be more than 0 seconds" in done.stderr
