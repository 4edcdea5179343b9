"""``user_import_path``: '' on sys.path for user code, Loom's names pinned (issue 15 item 1).

Run in a fresh ``python -P`` (as Loom launches its processes) in a directory of files
named like Loom's packages, since the rule is about what a process imports first.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CHECK = textwrap.dedent(
    """
    import sys
    from kernel.server._import_path import _insertion_index, user_import_path

    before_path, before_meta = list(sys.path), list(sys.meta_path)
    with user_import_path():
        assert sys.path.index("") == _insertion_index(before_path), sys.path
        assert sys.path.index("") > 0  # after the standard library
        import mymod, parallel, shell  # first imported now, with '' on the path
        assert mymod.value == 42
        for module in (parallel, shell):
            assert "userdir" not in module.__file__, module.__file__
        import parallel.client  # submodules come from the package found
        assert "userdir" not in parallel.client.__file__
    assert (sys.path, sys.meta_path) == (before_path, before_meta)
    print("ok")
    """
)


def test_user_modules_import_and_loom_names_stay_loom(tmp_path: Path) -> None:
    work = tmp_path / "userdir"
    work.mkdir()
    for name in ("kernel", "shell", "parallel", "zmq"):
        (work / f"{name}.py").write_text("raise SystemExit('shadowed')\n")
    (work / "mymod.py").write_text("value = 42\n")
    done = subprocess.run(
        [sys.executable, "-P", "-c", CHECK],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")
