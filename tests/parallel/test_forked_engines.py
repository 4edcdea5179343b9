"""The ``local`` launcher forks its engines from one fork server (``parallel.engine._forkserver``):
one process imports what engines need, each engine is a fork of it in a session of its
own. The controller starts that server before its own imports and tells it to fork once
the cluster file is written (``parallel.controller._fork_server``). Deaths are reported with their
cause, and stopping leaves no process behind, even an engine that ignores SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from _cluster_support import isolate, running_cluster

import parallel as ipp
from kernel.client import wait_pid_exit

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def test_engines_are_forked_by_one_server_each_in_its_own_session() -> None:
    with running_cluster(3) as (cluster, rc):
        pids = rc[:].apply_sync(os.getpid)
        assert sorted(pids) == sorted(record.pid for record in rc._records.values())
        servers = {_parent(pid) for pid in pids}
        assert len(servers) == 1
        (server,) = servers
        assert cluster._process is not None
        assert server != cluster._process.pid
        assert _parent(server) == cluster._process.pid
        assert all(os.getsid(pid) == pid for pid in pids)
        # Started before the controller wrote the cluster file (so it held until told),
        # with the file's path, which its engines' command line shows (loom cluster stop).
        argv = Path(f"/proc/{server}/cmdline").read_bytes().split(b"\0")
        assert b"--hold" in argv
        assert str(cluster.cluster_file).encode() in argv
        # The server imported the engines' modules before forking: a task finds them loaded.
        assert rc[0].apply_sync(lambda: "cloudpickle" in __import__("sys").modules)
        # ... with collection off, then froze what they made (out of the way of the
        # engines' collections, and of their shared pages) and collection is on again.
        gc_state = rc[:].apply_sync(
            lambda: (__import__("gc").isenabled(), __import__("gc").get_freeze_count() > 0)
        )
        assert gc_state == [(True, True)] * 3


def test_a_killed_engine_is_reported_with_its_signal_and_stop_leaves_nothing() -> None:
    with running_cluster(2) as (cluster, rc):
        pids = dict(zip(rc.ids, rc[:].apply_sync(os.getpid), strict=True))
        server = _parent(pids[0])
        long = rc[1].apply_async(time.sleep, 60)
        rc[0].apply_sync(signal.signal, signal.SIGTERM, signal.SIG_IGN)  # stop must SIGKILL it
        os.kill(pids[1], signal.SIGKILL)
        with pytest.raises(ipp.EngineError, match="SIGKILL"):
            long.get(timeout=20)
        started = time.monotonic()
        cluster.stop_cluster_sync()
        for pid in (pids[0], server):
            assert wait_pid_exit(pid, 10), f"pid {pid} is still running"
        assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("codes", "status"),
    [
        ([], 0),  # nothing forked (a server for replacements only)
        ([0, 0], 0),
        ([-signal.SIGTERM, -signal.SIGTERM], 0),  # stopped: scancel, the launcher's stop
        ([2, 2], 2),  # every engine failed: the job must read FAILED
        ([2, -signal.SIGKILL], 128 + signal.SIGKILL),  # the last failure, as a shell says it
        ([2, 0], 0),  # one served and ended well
        ([-signal.SIGKILL, -signal.SIGTERM], 0),  # died, its replacement was stopped
    ],
)
def test_the_fork_server_exits_non_zero_only_when_every_engine_failed(
    codes: list[int], status: int
) -> None:
    from parallel.engine._forkserver import Endings

    ended = Endings()
    for code in codes:
        ended.add(code)
    assert ended.status() == status


def _marked(marker: str) -> list[int]:
    """Live processes whose environment has ``LOOM_TEST_MARK=marker``."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                env = Path(entry.path, "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"LOOM_TEST_MARK={marker}".encode() in env:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--restart-limit", "often"], "--restart-limit 'often': use DEATHS/SECONDS"),
        (["--ip", "192.0.2.1", "--transport", "tcp"], "cannot listen on '192.0.2.1'"),
    ],
)
def test_a_controller_that_stops_before_its_launch_leaves_no_fork_server(
    args: list[str], said: str
) -> None:
    """The fork server starts right after the arguments are parsed; a controller that
    then gives up (a bad option, an address it cannot bind) kills and reaps it before it
    exits. Left to itself the server would live on until its imports were done."""
    marker = uuid.uuid4().hex
    argv = [sys.executable, "-P", "-m", "parallel.controller", "-n", "2", *args]
    env = {**os.environ, "LOOM_TEST_MARK": marker}
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert said in done.stderr
        assert "Traceback" not in done.stderr
        assert _marked(marker) == []  # no wait: it was reaped before the controller exited
    finally:
        for pid in _marked(marker):
            os.kill(pid, signal.SIGKILL)


def test_a_fork_server_that_holds_forks_nothing_if_its_pipe_closes_before_go(
    tmp_path: Path,
) -> None:
    """``--hold``: it waits for ``go``; a command pipe closed first (its controller could
    not start) ends it with status 0, no engine forked, not even on a ``fork`` line."""
    status_read, status_write = os.pipe()
    command_read, command_write = os.pipe()
    argv = [sys.executable, "-P", "-m", "parallel.engine", "-f", str(tmp_path / "none.json")]
    argv += ["--fork", "2", "--hold", "--status-fd", str(status_write)]
    argv += ["--command-fd", str(command_read)]
    server = subprocess.Popen(argv, pass_fds=(status_write, command_read), start_new_session=True)
    try:
        os.close(status_write)
        os.close(command_read)
        os.write(command_write, b"fork 1234\n")  # before go: not acted on
        os.close(command_write)
        with os.fdopen(status_read, "rb") as status:
            assert status.read() == b""  # no "started" line
        assert server.wait(60) == 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


def test_holding_needs_a_command_pipe(tmp_path: Path) -> None:
    argv = [sys.executable, "-P", "-m", "parallel.engine", "-f", str(tmp_path / "c.json")]
    done = subprocess.run(
        [*argv, "--fork", "1", "--hold", "--status-fd", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].endswith("--hold needs --command-fd")


@pytest.mark.parametrize(
    "env",
    [
        {"JUPYTER_RUNTIME_DIR": "/r/rt"},
        {"JUPYTER_DATA_DIR": "/r/data"},
        {"XDG_DATA_HOME": "/r/xdg"},
        {"HOME": "/r/home"},
    ],
)
def test_the_early_cluster_file_is_where_the_controller_writes_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    """``_fork_server.default_cluster_file`` (no kernel.protocol import) is
    ``ControllerInfo.default_path``, and its cluster ids look like the controller's."""
    from parallel.controller._fork_server import default_cluster_file, new_cluster_id
    from parallel.protocol._controller_info import ControllerInfo

    for name in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cluster_id = new_cluster_id()
    assert len(cluster_id) == 12
    assert int(cluster_id, 16) >= 0
    expected = ControllerInfo(cluster_id=cluster_id, key=b"k", pid=1).default_path
    assert default_cluster_file(cluster_id) == expected


@pytest.mark.parametrize(
    ("engines", "restore", "launcher", "early"),
    [
        (4, False, '{"engines": "local"}', True),
        (4, False, '{"engines": "local", "options": {}}', True),
        (0, False, '{"engines": "local"}', False),  # nothing to fork
        (4, True, '{"engines": "local"}', False),  # restored: engines come back
        (4, False, '{"engines": "mpi"}', False),
        (4, False, '{"engines": "local", "options": {"x": 1}}', False),  # refused later
        (4, False, "not json", False),  # said later, by launcher_from_json
    ],
)
def test_which_starts_fork_before_the_controller_imports(
    engines: int, restore: bool, launcher: str, early: bool
) -> None:
    from parallel.controller._main import plain_local

    assert plain_local(engines, restore, launcher) is early


def test_the_default_restart_limit_is_the_policy_s() -> None:
    from parallel.controller._main import DEFAULT_RESTART_LIMIT
    from parallel.controller._restarts import DEATH_WINDOW, MAX_DEATHS

    assert f"{MAX_DEATHS}/{DEATH_WINDOW:g}" == DEFAULT_RESTART_LIMIT
