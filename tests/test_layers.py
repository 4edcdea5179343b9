"""The import direction of docs/architecture.md, checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _modules_after_import(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout))


def _top(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_protocol_is_pure_stdlib() -> None:
    loaded = _top(_modules_after_import("kernel.protocol"))
    assert not loaded & {"zmq", "asyncio", "prompt_toolkit", "shell", "parallel", "jupyter_core"}


@pytest.mark.parametrize("module", ["kernel", "kernel.server"])
def test_kernel_never_imports_front_ends(module: str) -> None:
    loaded = _top(_modules_after_import(module))
    assert not loaded & {"shell", "parallel", "prompt_toolkit"}


def test_kernel_server_start_imports_stay_light() -> None:
    # Start-up time matters (kernel_info within ~100 ms): heavy modules load lazily.
    loaded = _top(_modules_after_import("kernel.server"))
    assert not loaded & {"jedi", "pygments", "jupyter_client", "IPython"}


def test_the_kernel_starts_answering_before_asyncio_is_imported() -> None:
    # kernel.server._app binds and starts the I/O thread (which answers kernel_info)
    # with only these imports; asyncio and the server come after (module docstring).
    loaded = _top(_modules_after_import("kernel.server._app"))
    assert not loaded & {"asyncio", "jedi", "pygments", "sqlite3"}
    assert "zmq" in loaded


def test_the_console_draws_its_first_prompt_without_pyzmq() -> None:
    # Everything the console imports before its first prompt is drawn (the kernel is
    # launched, not yet connected to: shell._console's docstring). pyzmq and the
    # protocol's message modules come after, when it connects.
    loaded = _modules_after_import("shell.cli, shell._console, shell._interactive, kernel._manager")
    assert "prompt_toolkit" in _top(loaded)
    assert "zmq" not in _top(loaded)
    assert not loaded & {"kernel._client", "kernel.protocol._session", "kernel.protocol._tracker"}
