"""``find_connection_file``: what ``--existing NAME`` means, for every front end."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from kernel.client import describe_exit, find_connection_file
from kernel.protocol import ConnectionFileError


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
