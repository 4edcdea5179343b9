"""Issue 15 item 1: a cluster starts from a directory holding files named like Loom's
packages and its dependencies, and its engines still import the user's own modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _cluster_support import isolate, running_cluster

SHADOWS = ("kernel", "shell", "parallel", "zmq")


def test_a_cluster_starts_in_a_directory_shadowing_loom(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate(monkeypatch, tmp_path)
    work = tmp_path / "userdir"
    work.mkdir()
    for name in SHADOWS:
        (work / f"{name}.py").write_text("print('mine')\nraise SystemExit(0)\n")
    (work / "mymod.py").write_text("value = 6 * 7\n")
    monkeypatch.chdir(work)
    with running_cluster(2) as (_, rc):
        assert rc[:].execute("import mymod; v = mymod.value").get(timeout=30) is not None
        assert rc[:].pull("v", block=True) == [42, 42]
        assert rc[:].apply_sync(os.getcwd) == [str(work), str(work)]
