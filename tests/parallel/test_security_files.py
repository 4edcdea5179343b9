"""What a cluster leaves on disk is its user's alone: every file the controller and its
engines create in the runtime directory (the cluster file, its engines file, the task
records and SQLite's journal files beside them, the engines' connection files) is 0600,
and every directory 0700, whatever the umask (issue 12: "owner-only files and
directories"). The records hold every task's arguments and results."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from _cluster_support import isolate, running_cluster


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def test_every_file_a_cluster_makes_is_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: files others can read unless made otherwise
    try:
        with running_cluster(1, transport="tcp") as (_, rc):
            assert rc[0].apply_sync(lambda: "secret result") == "secret result"
            runtime = tmp_path / "runtime"
            modes = {
                str(path.relative_to(runtime)): path.stat().st_mode for path in runtime.rglob("*")
            }
    finally:
        os.umask(old)
    assert any(name.endswith(".db") for name in modes), modes  # the records are on disk
    assert any(name.startswith("kernel-engine-") for name in modes), modes
    exposed = {
        name: oct(stat.S_IMODE(mode))
        for name, mode in modes.items()
        if stat.S_IMODE(mode) != (0o700 if stat.S_ISDIR(mode) else 0o600)
    }
    assert exposed == {}
