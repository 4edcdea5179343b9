"""``loom``'s command line: options reach the console wherever they are written, and
the console and ``loom run`` agree on the facts they share."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import _support
import pytest
from _support import Reaper

import kernel
from kernel import KernelManager
from kernel.client import DEFAULT_KERNEL_NAME
from kernel.client._manager import pick_ports
from kernel.protocol import ConnectionInfo
from kernel.server._kernel_info import kernel_info_content
from shell.batch._kernel_target import KernelTarget
from shell.cli import _parser


@pytest.mark.parametrize(
    ("argv", "kernel", "existing", "vi"),
    [
        ([], None, None, None),
        (["--vi"], None, None, True),
        (["--vi", "console"], None, None, True),
        (["console", "--vi"], None, None, True),
        (["--kernel", "python3", "console"], "python3", None, None),
        (["console", "--kernel", "python3", "--existing"], "python3", "", None),
        (["--existing", "k.json", "console", "--vi"], None, "k.json", True),
    ],
)
def test_console_options_before_or_after_the_subcommand(
    argv: list[str], kernel: str | None, existing: str | None, vi: bool | None
) -> None:
    args = _parser(argv).parse_args(argv)
    assert (args.kernel, args.existing, args.vi) == (kernel, existing, vi)


# -- one owner per fact: the console and `loom run` agree ------------------------------

ROOT = Path(__file__).resolve().parents[2]


def loom(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m ARGS`` (``shell`` is ``loom``, ``shell.batch`` is ``loom run``)."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        LOOM_HISTORY_FILE=str(tmp_path / "kernel_history.sqlite"),
        LOOM_CONSOLE_HISTORY=str(tmp_path / "console_history"),
    )
    return subprocess.run(
        [sys.executable, "-m", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )


def test_one_version_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser(["--version"]).parse_args(["--version"])
    assert capsys.readouterr().out == f"loom {kernel.__version__}\n"
    assert importlib.metadata.version("loom") == kernel.__version__  # pyproject reads it
    assert kernel_info_content()["implementation_version"] == kernel.__version__


@pytest.mark.peer
def test_console_and_run_find_the_same_connection_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--existing NAME`` meant two things (only ``loom run`` resolved bare names)."""
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    (tmp_path / "job.py").write_text("print('run', 6 * 7)\n")
    seen: dict[str, tuple[object, ...]] = {}

    async def scenario(reaper: Reaper) -> None:
        async with KernelManager("loom") as manager:
            reaper.track_manager(manager)
            path = manager.connection_file
            # An older file of a kernel that is gone: "" must not pick it, nor must a
            # part of our kernel's name (its hex id cannot occur in "0decoy").
            shell, iopub, stdin, control, hb = pick_ports()
            gone = ConnectionInfo(
                shell_port=shell,
                iopub_port=iopub,
                stdin_port=stdin,
                control_port=control,
                hb_port=hb,
            )
            decoy = gone.write(runtime / "kernel-0decoy.json")
            os.utime(decoy, (1, 1))
            short = path.stem.removeprefix("kernel-")
            for name in ("", path.name, short, short[3:9], "nope"):
                console = loom(tmp_path, "shell", "--existing", name, stdin="print(6 * 7)\n")
                run = loom(tmp_path, "shell.batch", "job.py", "--existing", name)
                seen[name] = (console.returncode, console.stdout, run.returncode, run.stdout)
                if name == "nope":
                    assert "no connection file 'nope'" in console.stderr, console.stderr
                    assert "no connection file 'nope'" in run.stderr, run.stderr
            assert manager.is_alive()  # both left it running

    _support.run(scenario)
    found = (0, "42\n", 0, "run 42\n")
    assert list(seen.values()) == [found, found, found, found, (1, "", 2, "")]


@pytest.mark.peer
def test_console_and_run_start_the_same_default_kernel(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(PROBE)
    console = loom(tmp_path, "shell", stdin=f"{PROBE}quit()\nprint('after quit')\n")
    run = loom(tmp_path, "shell.batch", "job.py")
    assert (console.returncode, run.returncode) == (0, 0), console.stderr + run.stderr
    assert console.stdout == run.stdout == "loom\n"  # and nothing after quit()
    assert KernelTarget().kernel_name == DEFAULT_KERNEL_NAME == "loom"


#: What kernel runs this? Only Loom's own kernel has loaded ``kernel.server``.
PROBE = "import sys; print('loom' if 'kernel.server' in sys.modules else 'other')\n"
