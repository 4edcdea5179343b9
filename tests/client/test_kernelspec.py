"""Kernelspec discovery, validation and formatting, checked against jupyter_client's tools."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kernel import (
    KernelSpec,
    KernelSpecError,
    find_kernel_specs,
    format_kernel_cmd,
    format_kernelspec_list,
    get_kernel_spec,
)
from kernel.client._kernelspec import BUILTIN_LOCATION

VENV_KERNELS = Path(sys.prefix) / "share" / "jupyter" / "kernels"


def _install(root: Path, name: str, spec: Any) -> Path:
    """Write ``root/kernels/name/kernel.json`` (``spec`` is dumped unless it is a str)."""
    directory = root / "kernels" / name
    directory.mkdir(parents=True)
    text = spec if isinstance(spec, str) else json.dumps(spec)
    (directory / "kernel.json").write_text(text, encoding="utf-8")
    return directory


GOOD = {"argv": ["python", "-c", "pass", "{connection_file}"], "display_name": "Good"}


@pytest.fixture
def jupyter_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, highest-priority ``JUPYTER_PATH`` entry, and an empty user data directory.

    Both replace what a session-wide fixture may have set (tests/conformance installs a
    ``loom`` kernelspec for the whole session), so these tests see the same kernelspecs
    whatever ran before them.
    """
    root = tmp_path / "first"
    root.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(root))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    return root


def test_python3_is_found_in_the_venv() -> None:
    specs = find_kernel_specs()
    assert specs["python3"] == VENV_KERNELS / "python3"


def test_python3_spec_is_parsed() -> None:
    spec = get_kernel_spec("python3")
    assert spec.name == "python3"
    assert spec.resource_dir == VENV_KERNELS / "python3"
    assert spec.argv[1:] == ["-m", "ipykernel_launcher", "-f", "{connection_file}"]
    assert spec.language == "python"
    assert spec.interrupt_mode == "signal"
    assert spec.display_name.startswith("Python 3")
    assert spec.metadata.get("debugger") is True


def test_unknown_name_lists_the_available_ones() -> None:
    with pytest.raises(KernelSpecError, match=r"no kernelspec named 'no-such-kernel'.*python3"):
        get_kernel_spec("no-such-kernel")


def test_invalid_name_is_rejected() -> None:
    with pytest.raises(KernelSpecError, match="invalid kernel name"):
        get_kernel_spec("bad name")


def test_names_are_case_insensitive(jupyter_path: Path) -> None:
    resource_dir = _install(jupyter_path, "MyKernel", GOOD)
    assert find_kernel_specs()["mykernel"] == resource_dir
    spec = get_kernel_spec("MYKERNEL")
    assert (spec.name, spec.display_name) == ("mykernel", "Good")


def test_first_directory_on_the_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _install(tmp_path / "a", "dup", {**GOOD, "display_name": "first"})
    _install(tmp_path / "b", "dup", {**GOOD, "display_name": "second"})
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert find_kernel_specs()["dup"] == first
    assert get_kernel_spec("dup").display_name == "first"


def test_directories_with_invalid_names_or_no_kernel_json_are_skipped(jupyter_path: Path) -> None:
    _install(jupyter_path, "has space", GOOD)
    (jupyter_path / "kernels" / "empty").mkdir()
    specs = find_kernel_specs()
    assert "has space" not in specs
    assert "empty" not in specs


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ({"display_name": "x"}, "'argv' must be a non-empty list of strings"),
        ({"argv": "python -m x"}, "'argv' must be a non-empty list of strings"),
        ({"argv": ["python", 3]}, "'argv' must be a non-empty list of strings"),
        ({"argv": []}, "'argv' must be a non-empty list of strings"),
        ({**GOOD, "interrupt_mode": "telepathy"}, "'interrupt_mode' must be 'signal' or 'message'"),
        ({**GOOD, "env": {"A": 1}}, "'env' must map strings to strings"),
        ({**GOOD, "metadata": []}, "'metadata' must be an object"),
        ({**GOOD, "language": None}, "'language' must be a string"),
    ],
)
def test_broken_kernel_json_gives_a_clear_error(
    jupyter_path: Path, content: Any, message: str
) -> None:
    resource_dir = _install(jupyter_path, "broken", content)
    with pytest.raises(KernelSpecError) as info:
        get_kernel_spec("broken")
    assert message in str(info.value)
    assert str(resource_dir / "kernel.json") in str(info.value)


def test_interrupt_mode_is_caseless_and_defaults_to_signal(jupyter_path: Path) -> None:
    _install(jupyter_path, "msg", {**GOOD, "interrupt_mode": "Message"})
    _install(jupyter_path, "plain", GOOD)
    assert get_kernel_spec("msg").interrupt_mode == "message"
    assert get_kernel_spec("plain").interrupt_mode == "signal"


def test_format_kernel_cmd_substitutes_like_jupyter_client(tmp_path: Path) -> None:
    spec = KernelSpec(
        name="t",
        resource_dir=tmp_path,
        argv=["python3", "{resource_dir}/k.py", "-f", "{connection_file}", "{prefix}", "{other}"],
    )
    (tmp_path / "real.json").touch()
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    cmd = format_kernel_cmd(spec, tmp_path / "link.json")
    assert cmd == [
        sys.executable,
        f"{tmp_path}/k.py",
        "-f",
        os.path.realpath(tmp_path / "real.json"),
        sys.prefix,
        "{other}",
    ]


def test_format_kernel_cmd_keeps_other_executables(tmp_path: Path) -> None:
    spec = KernelSpec(name="t", resource_dir=tmp_path, argv=["/usr/bin/python2", "~/x"])
    assert format_kernel_cmd(spec, tmp_path / "c.json") == [
        "/usr/bin/python2",
        os.path.expanduser("~/x"),
    ]


def test_format_kernelspec_list_shows_python3() -> None:
    text = format_kernelspec_list()
    assert text.splitlines()[0] == "Available kernels:"
    assert any(
        line.split() == ["python3", str(VENV_KERNELS / "python3")] for line in text.splitlines()
    )


def test_format_kernelspec_list_matches_jupyter_kernelspec_list(jupyter_path: Path) -> None:
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent))
    if jupyter is None:
        pytest.skip("the jupyter command is not installed next to this Python")
    _install(jupyter_path, "a-much-longer-name", GOOD)
    _install(jupyter_path, "zz", GOOD)
    real = subprocess.run(
        [jupyter, "kernelspec", "list"], capture_output=True, text=True, check=True, timeout=60
    )
    # Loom's own kernel, built in, is the only line jupyter cannot know of.
    assert format_kernelspec_list(builtin=False) == real.stdout.rstrip("\n")
    assert format_kernelspec_list().splitlines() == [
        *real.stdout.rstrip("\n").splitlines(),
        f"  {'loom'.ljust(len('a-much-longer-name'))}    {BUILTIN_LOCATION}",
    ]


def test_an_installed_loom_kernelspec_is_listed_once(jupyter_path: Path) -> None:
    path = _install(jupyter_path, "loom", GOOD)
    lines = format_kernelspec_list().splitlines()
    assert [line.split()[0] for line in lines[1:]].count("loom") == 1
    assert f"  loom       {path}" in lines


def test_the_unknown_name_error_lists_loom_even_when_it_is_not_installed(
    jupyter_path: Path,
) -> None:
    assert "loom" not in find_kernel_specs()
    with pytest.raises(KernelSpecError, match=r"available: loom, python3$"):
        get_kernel_spec("no-such-kernel")


@pytest.mark.parametrize("python", [sys.executable, "python"])
def test_a_loom_kernelspec_installed_before_safe_path_gets_it(
    jupyter_path: Path, python: str
) -> None:
    """Issue 15 item 1: a spec `loom kernelspec install` wrote before Loom used -P."""
    old = {"argv": [python, "-m", "kernel", "-f", "{connection_file}"], "display_name": "L"}
    _install(jupyter_path, "oldloom", old)
    spec = get_kernel_spec("oldloom")
    assert spec.argv == [python, "-P", "-m", "kernel", "-f", "{connection_file}"]
    other = ["/opt/py2/bin/python", "-m", "kernel", "-f", "{connection_file}"]
    _install(jupyter_path, "otherpython", {**old, "argv": other})
    assert "-P" not in get_kernel_spec("otherpython").argv  # may not know -P: left alone
