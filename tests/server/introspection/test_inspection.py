"""Tests for kernel.server.introspection._inspection: finding the name, levels 0/1,
fallbacks, robustness."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from kernel.server.introspection._inspection import format_help, inspect, token_at_cursor

MODULE_SOURCE = '''\
"""A module written by the test."""


def scale(values, factor=2):
    """Multiply each value by factor."""
    return [value * factor for value in values]


class Vector:
    """A 2-d vector."""

    def __init__(self, x: float, y: float) -> None:
        """Make a vector from its coordinates."""
        self.x = x
        self.y = y

    @property
    def norm(self) -> float:
        """The Euclidean length (never evaluated by help)."""
        raise AssertionError("evaluated")
'''


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    path = tmp_path / "loom_inspected.py"
    path.write_text(MODULE_SOURCE)
    spec = importlib.util.spec_from_file_location("loom_inspected", path)
    assert spec is not None
    assert spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    # Registered as an import would: inspect finds a class's source through its module.
    monkeypatch.setitem(sys.modules, "loom_inspected", loaded)
    spec.loader.exec_module(loaded)
    return loaded


@pytest.fixture
def namespace(module: types.ModuleType) -> dict[str, Any]:
    return {
        "scale": module.scale,
        "Vector": module.Vector,
        "v": module.Vector(3.0, 4.0),
        "mod": module,
        "os": os,
    }


@pytest.fixture(scope="module")
def containers() -> dict[str, Any]:
    return {"items": list(range(10**6)), "table": {f"k{index}": index for index in range(10**6)}}


def help_text(code: str, namespace: dict[str, Any], level: int = 0, pos: int = -1) -> str:
    reply = inspect(code, len(code) if pos < 0 else pos, level, namespace)
    assert reply["found"], reply
    assert reply["metadata"] == {}
    text: str = reply["data"]["text/plain"]
    return text


def test_function_level_0(namespace: dict[str, Any], module: types.ModuleType) -> None:
    text = help_text("scale", namespace)
    lines = text.splitlines()
    assert lines[0] == "Signature: scale(values, factor=2)"
    assert "Type:      function" in lines
    assert f"File:      {module.__file__}" in lines
    assert "Docstring: Multiply each value by factor." in lines
    assert "Source:" not in text
    assert "\x1b" not in text


def test_function_level_1_shows_source(namespace: dict[str, Any]) -> None:
    text = help_text("scale", namespace, level=1)
    assert text.startswith("Signature: scale(values, factor=2)\n")
    assert "Source:\ndef scale(values, factor=2):\n" in text
    assert "return [value * factor for value in values]" in text
    assert "Docstring:" not in text


def test_builtin_has_no_source_so_level_1_shows_the_docstring(namespace: dict[str, Any]) -> None:
    for level in (0, 1):
        text = help_text("len", namespace, level=level)
        assert text.startswith("Signature: len(obj, /)\n")
        assert "builtin_function_or_method" in text
        assert "Docstring: Return the number of items in a container." in text
        assert "Source:" not in text


def test_class(namespace: dict[str, Any]) -> None:
    text = help_text("Vector", namespace)
    assert text.splitlines()[0] == "Init signature: Vector(x: float, y: float) -> None"
    assert "Type:           type" in text
    assert "Docstring:      A 2-d vector." in text
    assert "Init docstring: Make a vector from its coordinates." in text
    assert "class Vector:" in help_text("Vector", namespace, level=1)


def test_instance_shows_type_and_string_form(namespace: dict[str, Any]) -> None:
    text = help_text("v", namespace)
    assert "Type:        Vector" in text
    assert "String form: <loom_inspected.Vector object at" in text
    assert "Signature" not in text


def test_property_is_shown_not_evaluated(namespace: dict[str, Any]) -> None:
    text = help_text("v.norm", namespace)
    assert "Type:        property" in text
    assert "The Euclidean length" in text
    assert "def norm(self)" in help_text("v.norm", namespace, level=1)


@pytest.mark.parametrize("name", ["items", "table"])
def test_huge_container_string_form_is_short_and_fast(
    containers: dict[str, Any], name: str
) -> None:
    started = time.perf_counter()
    text = help_text(name, containers)
    assert time.perf_counter() - started < 2.0
    assert "Length:      1000000" in text
    form = next(line for line in text.splitlines() if line.startswith("String form:"))
    assert len(form) < 300


def test_missing_name_is_not_found(namespace: dict[str, Any]) -> None:
    assert inspect("no_such_name", 12, 0, namespace) == {"found": False, "data": {}, "metadata": {}}
    assert inspect("", 0, 0, namespace)["found"] is False


@pytest.mark.parametrize(
    ("code", "pos", "expected"),
    [
        ("scale([1, 2], ", -1, "scale"),
        ("scale(factor=", -1, "scale"),
        ("scale(len(x), ", -1, "scale"),
        ("scale(len(", -1, "len"),
        ("scale(len(x", -1, "x"),
        ("scale([1, 2])", -1, "scale"),
        ("x = 1\nscale(\n    [1, 2],\n    ", -1, "scale"),
        ("os.path.join", 5, "os.path"),
        ("os.path.join('a', ", -1, "os.path.join"),
    ],
)
def test_cursor_inside_a_call_inspects_the_callable(
    namespace: dict[str, Any], code: str, pos: int, expected: str
) -> None:
    cursor = len(code) if pos < 0 else pos
    token = token_at_cursor(code, cursor)
    assert token is not None
    assert token[0] == expected
    found = inspect(code, cursor, 0, {**namespace, "x": 1})
    assert found["found"]


def test_token_at_cursor_positions() -> None:
    assert token_at_cursor("os.path", 0) == ("os", 2)
    assert token_at_cursor("os.path", 7) == ("os.path", 7)
    assert token_at_cursor("f(a) + ", 7) == ("f", 1)
    assert token_at_cursor("1 + 2", 5) is None
    assert token_at_cursor("", 0) is None


def test_format_help_matches_inspect(namespace: dict[str, Any]) -> None:
    assert format_help("  scale ", namespace, 0) == help_text("scale", namespace)
    assert format_help("os.path.join", namespace, 1) is not None
    assert format_help("missing", namespace, 0) is None
    assert format_help("scale()", namespace, 0) is None
    assert format_help("1 + 1", namespace, 0) is None


def test_jedi_fallback_for_names_not_yet_run() -> None:
    code = "def zz(a, b):\n    'zz doc'\n    return a\nzz("
    assert "zz doc" in help_text(code, {})
    assert "def zz(a, b):" in help_text(code, {}, level=1)
    assert "Signature: dumps(" in help_text("import json\njson.dumps", {})


class Broken:
    """Its string form and length fail."""

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __len__(self) -> int:
        raise RuntimeError("len")


@pytest.mark.parametrize(
    ("code", "pos"),
    [("", 5), ("b", -4), ("'''", 2), ("(((", 3), ("}{", 1), ("b.", 2), ("\x00", 1), ("f'{b", 4)],
)
def test_never_raises(code: str, pos: int) -> None:
    reply = inspect(code, pos, 0, {"b": Broken()})
    assert set(reply) == {"found", "data", "metadata"}


def test_failing_dunders_only_drop_their_field() -> None:
    text = help_text("b", {"b": Broken()})
    assert "Type:      Broken" in text
    assert "String form" not in text
    assert "Its string form and length fail." in text
