"""``_import_hooks.after_import``: a function runs right after user code imports a module."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from kernel.server.interpreter import _import_hooks


@pytest.fixture
def module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"loom_hooked_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    _import_hooks._hooks.pop(name, None)
    sys.modules.pop(name, None)


def test_the_hook_runs_after_the_module_executes_and_again_on_reload(module_name: str) -> None:
    seen: list[object] = []
    _import_hooks.after_import(module_name, lambda module: seen.append(module.VALUE))
    assert seen == []  # nothing is imported by asking
    module = importlib.import_module(module_name)
    assert seen == [1]
    importlib.reload(module)
    assert seen == [1, 1]


def test_a_module_already_imported_is_hooked_at_once(module_name: str) -> None:
    module = importlib.import_module(module_name)
    seen: list[ModuleType] = []
    _import_hooks.after_import(module_name, seen.append)
    assert seen == [module]


def test_a_failing_hook_is_reported_and_the_import_still_succeeds(
    module_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(module: ModuleType) -> None:
        raise RuntimeError("no")

    _import_hooks.after_import(module_name, broken)
    assert importlib.import_module(module_name).VALUE == 1
    assert f"adapting {module_name} to the kernel failed" in capsys.readouterr().err


def test_other_imports_are_not_touched(module_name: str) -> None:
    _import_hooks.after_import(module_name, lambda module: None)
    import json.tool  # noqa: F401 - any module the hook does not watch

    assert type(sys.modules["json.tool"].__loader__).__name__ != "_HookedLoader"
