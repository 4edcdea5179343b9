"""``find_connection_file``: what ``--existing NAME`` means, for every front end."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel.client import FoundKernel, describe_exit, find_connection_file, find_running_kernel
from kernel.client._connection_files import kernel_is_gone
from kernel.protocol import ConnectionFileError, ConnectionInfo


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty runtime dir; the working directory is ``tmp_path/work``."""
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return runtime


def touch(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    os.utime(path, (mtime, mtime))
    return path


def test_no_name_is_the_newest_kernel_file(runtime: Path) -> None:
    with pytest.raises(ConnectionFileError, match=re.escape(f"no connection files in {runtime}")):
        find_connection_file(None)  # the runtime dir does not even exist yet
    touch(runtime / "kernel-old.json", 1)
    new = touch(runtime / "kernel-new.json", 2)
    touch(runtime / "jpserver-9.json", 3)  # a server's file, not a kernel's
    assert find_connection_file(None) == new
    assert find_connection_file("") == new


def test_a_bare_name_is_looked_up_in_the_runtime_dir(runtime: Path) -> None:
    old = touch(runtime / "kernel-1234.json", 1)
    other = touch(runtime / "other.json", 1)
    assert find_connection_file("kernel-1234.json") == old
    assert find_connection_file("1234") == old  # kernel-NAME.json
    assert find_connection_file("other.json") == other
    here = touch(Path("kernel-1234.json"), 1)
    assert find_connection_file("kernel-1234.json") == here  # the working directory first


def test_a_partial_name_matches_like_jupyter_client(runtime: Path) -> None:
    touch(runtime / "kernel-ab12-cd34.json", 1)
    newer = touch(runtime / "kernel-ab12-ef56.json", 2)
    touch(runtime / "jpserver-ab12.json", 3)  # matches, but is no kernel's file
    assert find_connection_file("ab12") == newer  # several: the newest
    assert find_connection_file("cd3") == runtime / "kernel-ab12-cd34.json"
    assert find_connection_file("kernel-*-cd34.json") == runtime / "kernel-ab12-cd34.json"
    with pytest.raises(ConnectionFileError) as info:
        find_connection_file("zz9")
    message = str(info.value)  # says what was searched
    assert "'zz9'" in message
    assert str(runtime) in message
    assert "kernel-zz9.json" in message
    assert "'*zz9*'" in message


def test_a_path_is_taken_as_it_is(runtime: Path, tmp_path: Path) -> None:
    touch(runtime / "kernel-x.json", 1)
    elsewhere = touch(tmp_path / "elsewhere" / "conn.json", 1)
    assert find_connection_file(str(elsewhere)) == elsewhere
    assert find_connection_file("../elsewhere/conn.json") == Path("../elsewhere/conn.json")
    missing = "sub/kernel-x.json"  # a path: not looked up elsewhere
    with pytest.raises(ConnectionFileError, match=re.escape(f"no connection file {missing}")):
        find_connection_file(missing)


def test_describe_exit_is_the_one_wording_of_an_exit() -> None:
    # The console says "Kernel <this>.", loom run "... it <this>" (they had copies).
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-200) == "was killed by signal 200"


# -- stale files: find_running_kernel (issue 15 item 2) ---------------------------------


def _free_port() -> int:
    """A TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connection(path: Path, hb_port: int, mtime: float, **extra: object) -> Path:
    ports = {f"{ch}_port": _free_port() for ch in ("shell", "iopub", "stdin", "control")}
    data = {**ports, "hb_port": hb_port, "ip": "127.0.0.1", "transport": "tcp", "key": "k"}
    data.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def listening() -> Iterator[int]:
    """A port something listens on: what a live kernel's heartbeat looks like to a probe."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_the_newest_live_kernel_is_found_and_stale_files_are_named(
    runtime: Path, listening: int
) -> None:
    live = _connection(runtime / "kernel-live.json", listening, 1)
    stale = _connection(runtime / "kernel-stale.json", _free_port(), 3)
    broken = runtime / "kernel-broken.json"
    broken.write_text("{")
    os.utime(broken, (2, 2))
    started = time.monotonic()
    found = find_running_kernel()
    assert time.monotonic() - started < 1.0
    assert (found.path, found.skipped) == (live, (stale, broken))
    assert found.info.hb_port == listening
    assert find_running_kernel("kernel-*").path == live  # a pattern passes over them too


def test_all_stale_says_so_and_how_to_clean_up(runtime: Path) -> None:
    a = _connection(runtime / "kernel-a.json", _free_port(), 1)
    b = _connection(runtime / "kernel-b.json", _free_port(), 2)
    cleanup = f"are gone; remove the stale files with: rm {b} {a}"
    with pytest.raises(ConnectionFileError, match=re.escape(cleanup)):
        find_running_kernel("")
    with pytest.raises(ConnectionFileError, match="no connection file 'zz'"):
        find_running_kernel("zz")  # nothing matches: find_connection_file's own error


def test_a_file_named_exactly_on_a_dead_kernel_is_reported_at_once(runtime: Path) -> None:
    stale = _connection(runtime / "kernel-x.json", _free_port(), 1)
    started = time.monotonic()
    for name in ("kernel-x.json", "x", str(stale)):
        said = (
            f"is gone (nothing listens on its ports); the file is stale, remove it with: rm {stale}"
        )
        with pytest.raises(ConnectionFileError, match=re.escape(said)):
            find_running_kernel(name)
    assert time.monotonic() - started < 2.0


def test_ipc_kernels_are_probed_through_their_socket_files(runtime: Path, tmp_path: Path) -> None:
    base = tmp_path / "k"
    gone = _connection(runtime / "kernel-gone.json", 5, 2, transport="ipc", ip=str(base))
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(f"{base}-7")
        server.listen()
        alive = _connection(runtime / "kernel-alive.json", 7, 1, transport="ipc", ip=str(base))
        assert find_running_kernel() == FoundKernel(alive, ConnectionInfo.read(alive), (gone,))
    assert kernel_is_gone(ConnectionInfo.read(alive))  # a socket file nobody listens on
