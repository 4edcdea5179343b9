"""Tests for kernel.server.introspection._completion: sources, reply shape, bounded cost,
never raising."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel.server.introspection import _completion
from kernel.server.introspection._completion import MAX_MATCHES, complete

MAGICS = ["time", "timeit", "cd", "%who"]


def matches(code: str, namespace: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
    """The matches for ``code`` with the cursor at its end."""
    reply = complete(code, len(code), namespace if namespace is not None else {}, **kwargs)
    result: list[str] = reply["matches"]
    return result


class Point:
    """A live object whose attributes only exist at run time."""

    def __init__(self) -> None:
        for name in ("alpha", "altitude", "beta"):
            setattr(self, name, 1)

    def move(self, dx: int, dy: int = 0) -> None:
        """Move the point."""


class Recorder:
    """Counts how often its property is evaluated."""

    calls = 0

    @property
    def prop(self) -> dict[str, int]:
        Recorder.calls += 1
        return {"secret": 1}


# -- reply shape and jedi --------------------------------------------------------------------


def test_attribute_completion_on_live_object() -> None:
    reply = complete("p.al", 4, {"p": Point()})
    assert reply["matches"] == ["alpha", "altitude"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (2, 4)
    types = reply["metadata"]["_jupyter_types_experimental"]
    assert [entry["text"] for entry in types] == reply["matches"]
    assert all(entry["start"] == 2 and entry["end"] == 4 for entry in types)


def test_method_completion_has_type_and_signature() -> None:
    reply = complete("p.mo", 4, {"p": Point()})
    assert reply["matches"] == ["move"]
    entry = reply["metadata"]["_jupyter_types_experimental"][0]
    assert entry["type"] == "function"
    # The annotations are strings here (``from __future__ import annotations``).
    assert entry["signature"].startswith("(dx: ")
    assert entry["signature"].endswith("=0)")


def test_cursor_in_the_middle_of_multiline_code_with_wide_characters() -> None:
    code = "s = '😀é'\nx = p.al\nprint(x)"
    cursor = code.index("p.al") + 4
    reply = complete(code, cursor, {"p": Point()})
    assert reply["matches"] == ["alpha", "altitude"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (cursor - 2, cursor)


def test_imports_keywords_and_parameters() -> None:
    assert "os" in matches("import o")
    assert "path" in matches("from os import pa")
    assert matches("from os.path import joi") == ["join"]
    assert "while" in matches("whil")
    assert "alpha=" in matches("def f(alpha, beta): pass\nf(al")


def test_names_from_the_namespace() -> None:
    assert matches("my_v", {"my_value": 1, "my_vector": 2}) == ["my_value", "my_vector"]


def test_only_names_that_exist_are_offered() -> None:
    """Issue 15 item 16: jedi's builtins stub and namespace stand-in offer names no cell has."""
    import builtins

    empty = {"__builtins__": builtins, "__name__": "__main__"}
    assert matches("Abs", empty) == []  # typeshed's builtins.pyi imports AbstractSet
    assert matches("Windows", empty) == []  # declared in the stub, absent on Linux
    dunders = matches("__", empty)
    assert {"__build_class__", "__name__"} <= set(dunders)
    assert not {"__class__", "__dict__", "__weakref__", "__module__"} & set(dunders)
    assert matches("ab", empty) == ["abs"]
    assert matches("Abs", {**empty, "AbstractSet": object}) == ["AbstractSet"]  # now it exists
    assert matches("x = 1\nx.__cl", empty) == ["__class__"]  # attributes are jedi's to judge
    assert matches("(1).bit_le", empty) == ["bit_length"]
    assert matches("def f(alpha): pass\nf(alp", empty) == ["alpha="]
    assert "AbstractSet" not in matches("Abs", {})  # no __builtins__: the builtins module


def test_nothing_inside_comments() -> None:
    assert matches("x = 1  # os.pa", {"os": os}) == []


def test_tab_never_evaluates_properties() -> None:
    Recorder.calls = 0
    namespace = {"r": Recorder()}
    complete("r.prop.", 7, namespace)
    complete('r.prop["', 8, namespace)
    complete("r.prop[", 7, namespace)
    assert Recorder.calls == 0


def test_budget_zero_skips_jedi() -> None:
    assert matches("os.pa", {"os": os}, budget=0.0) == []


# -- dict keys ------------------------------------------------------------------------------

KEYS: dict[Any, int] = {"key": 1, "kez": 2, b"bk": 3, 5: 4, "x y": 5, 'say "hi"': 6, True: 7}


def test_quoted_dict_keys_get_closing_quote_and_bracket() -> None:
    reply = complete('d["ke', 5, {"d": KEYS})
    assert reply["matches"] == ['key"]', 'kez"]']
    assert (reply["cursor_start"], reply["cursor_end"]) == (3, 5)
    assert reply["metadata"]["_jupyter_types_experimental"][0]["type"] == "dict key"


def test_dict_keys_do_not_repeat_what_follows_the_cursor() -> None:
    assert complete("d['ke']", 5, {"d": KEYS})["matches"] == ["key", "kez"]
    assert complete("d['ke]", 5, {"d": KEYS})["matches"] == ["key'", "kez'"]


def test_dict_keys_are_escaped_for_the_quote() -> None:
    assert matches('d["say', {"d": KEYS}) == ['say \\"hi\\""]']
    assert matches("d['say", {"d": KEYS}) == ['say "hi"\']']


def test_bytes_keys_with_a_bytes_literal() -> None:
    assert matches('d[b"', {"d": KEYS}) == ['bk"]']


def test_unquoted_dict_keys_come_first_as_reprs() -> None:
    found = matches("d[", {"d": KEYS})
    keys = ["'key']", "'kez']", "'say \"hi\"']", "'x y']", "5]", "b'bk']"]
    assert found[: len(keys)] == keys
    assert matches("d[5", {"d": KEYS}) == ["5]"]


def test_dict_keys_through_attributes() -> None:
    class Holder:
        config = {"depth": 1, "density": 2}

    assert matches("h.config['de", {"h": Holder()}) == ["density']", "depth']"]


# -- paths ----------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "alpha_dir").mkdir()
    (tmp_path / "alpha.txt").write_text("a")
    (tmp_path / ".alpha_hidden").write_text("h")
    (tmp_path / "beta.txt").write_text("b")
    return tmp_path


def test_absolute_paths_in_strings(tree: Path) -> None:
    code = f'open("{tree}/al'
    reply = complete(code, len(code), {})
    assert reply["matches"] == [f"{tree}/alpha.txt", f"{tree}/alpha_dir/"]
    assert reply["cursor_start"] == code.index('"') + 1
    assert reply["metadata"]["_jupyter_types_experimental"][0]["type"] == "path"


def test_relative_paths_and_hidden_files(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    assert matches("open('al") == ["alpha.txt", "alpha_dir/"]
    assert matches("open('alpha_dir/") == []
    assert matches("open('.al") == [".alpha_hidden"]


def test_home_directory_is_expanded(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tree))
    assert matches('open("~/al') == ["~/alpha.txt", "~/alpha_dir/"]


# -- magics and IPython syntax --------------------------------------------------------------


def test_line_magics() -> None:
    reply = complete("%ti", 3, {}, magics=MAGICS)
    assert reply["matches"] == ["%time", "%timeit"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (0, 3)
    assert matches("%", magics=MAGICS) == ["%cd", "%time", "%timeit", "%who"]
    assert matches("x = %c", magics=MAGICS) == ["%cd"]
    assert matches("for i in x:\n    %ti", magics=MAGICS) == ["%time", "%timeit"]


def test_cell_magics_only_on_the_first_line() -> None:
    assert matches("%%ti", magics=MAGICS) == ["%%time", "%%timeit"]
    assert matches("x = 1\n%%ti", magics=MAGICS) == []


def test_magic_and_shell_arguments(tree: Path) -> None:
    assert matches(f"%cd {tree}/alpha_", magics=MAGICS) == [f"{tree}/alpha_dir/"]
    assert matches(f"!ls {tree}/be") == [f"{tree}/beta.txt"]
    assert "path" in matches("%time os.pa", {"os": os}, magics=MAGICS)


# -- huge objects stay within bounds --------------------------------------------------------


class ManyAttributes:
    """An object with 100k instance attributes."""

    def __init__(self) -> None:
        for index in range(100_000):
            setattr(self, f"attr_{index}", index)


@pytest.fixture(scope="module")
def huge() -> Iterator[dict[str, Any]]:
    namespace: dict[str, Any] = {f"var_{index}": index for index in range(100_000)}
    namespace["big"] = list(range(10**7))
    namespace["bigd"] = {f"k{index}": index for index in range(10**6)}
    namespace["many"] = ManyAttributes()
    yield namespace
    namespace.clear()


@pytest.mark.parametrize(
    ("code", "expected", "count"),
    [
        ("big.app", "append", 1),
        ("bi", "bigd", 3),
        ("many.", "attr_0", MAX_MATCHES),
        ("many.attr_99", "attr_99", MAX_MATCHES),
        ("many.attr_1.", "bit_length", None),
        ('bigd["k99999', 'k99999"]', 11),
        ('bigd["', 'k0"]', MAX_MATCHES),
        ("bigd[", "'k0']", MAX_MATCHES),
        ("var_99", "var_99", MAX_MATCHES),
        ("print(", "print", MAX_MATCHES),
    ],
)
def test_huge_objects_complete_within_bounds(
    huge: dict[str, Any], code: str, expected: str, count: int | None
) -> None:
    # Bounded in matches here; the time bound is test_budget_stops_scanning_dict_keys's
    # (deterministic), speed is bench_kernel's (no timed asserts in tests).
    reply = complete(code, len(code), huge)
    assert expected in reply["matches"]
    if count is not None:
        assert len(reply["matches"]) == count


def test_budget_stops_scanning_dict_keys(huge: dict[str, Any]) -> None:
    # The deadline is checked every few thousand keys; k99999 is far beyond the first check.
    assert matches('bigd["k99999', huge, budget=0.0) == []


# -- never raises ---------------------------------------------------------------------------


class Hostile:
    """Every hook raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(name)

    def __dir__(self) -> list[str]:
        raise RuntimeError("dir")

    def __repr__(self) -> str:
        raise RuntimeError("repr")


class BrokenMapping(dict[str, int]):
    def keys(self) -> Any:
        raise RuntimeError("keys")


@pytest.mark.parametrize(
    ("code", "cursor_pos"),
    [
        ("", 0),
        ("", 5),
        ("x", -3),
        ("os.pa", 10**9),
        ("'''", 3),
        ("\x00\x01\x02", 2),
        ("(((((((", 3),
        ("}{)(][", 6),
        ("h.", 2),
        ("h.x.", 4),
        ('bad["', 5),
        ("bad[", 4),
        ("lambda: (yield)", 15),
        ("(" * 200 + "x.", 202),
        ("def f(:\n  return", 16),
        ("x = '\\", 6),
        ("%", 1),
        ("!", 1),
        ("f'{", 3),
        ("a\r\nb.\rc", 5),
    ],
)
def test_never_raises(code: str, cursor_pos: int) -> None:
    namespace: dict[Any, Any] = {"h": Hostile(), "bad": BrokenMapping(a=1), "os": os, 3: "x"}
    reply = complete(code, cursor_pos, namespace, magics=MAGICS)
    assert isinstance(reply["matches"], list)
    assert 0 <= reply["cursor_start"] <= reply["cursor_end"] <= max(len(code), 0)
    assert len(reply["metadata"]["_jupyter_types_experimental"]) == len(reply["matches"])


def test_internal_errors_give_an_empty_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(_completion, "_collect", explode)
    reply = complete("os.pa", 3, {"os": os})
    assert reply["matches"] == []
    assert (reply["cursor_start"], reply["cursor_end"]) == (3, 3)
