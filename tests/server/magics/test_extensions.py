"""%load_ext and async magics: how other packages (the parallel layer's %px) extend the kernel."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel.server.interpreter import CellOutcome, Interpreter, transform_cell
from kernel.server.magics import CANNOT_AWAIT
from kernel.server.magics._extensions import load_extension

Published = list[tuple[str, dict[str, Any]]]

EXTENSION = """
import asyncio

async def later(args):
    await asyncio.sleep(0)
    return "later:" + args

async def later_cell(args, body):
    await asyncio.sleep(0)
    return len(body.splitlines())

def load_loom_extension(magics):
    magics.register_line("later", later, is_async=True)
    magics.register_cell("later", later_cell, is_async=True)
    magics.register_line("plain", lambda args: args.upper())
    LOADS.append(1)

def unload_loom_extension(magics):
    del magics.line["later"], magics.cell["later"], magics.line["plain"]
    UNLOADS.append(1)

LOADS = []
UNLOADS = []
"""


@pytest.fixture
def ext_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"loom_test_ext_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(EXTENSION))
    (tmp_path / "ipy_only_ext.py").write_text("def load_ipython_extension(ip):\n    pass\n")
    (tmp_path / "not_an_ext.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in (name, "ipy_only_ext", "not_an_ext"):
        sys.modules.pop(module, None)


def test_run_line_magic_runs_an_async_magic_to_the_end(interp: Interpreter) -> None:
    """``get_ipython().run_line_magic``/``run_cell_magic`` cannot await: an async magic runs
    to the end with ``CANNOT_AWAIT`` set (it returned a coroutine nobody awaited); one that
    suspends anyway is a one-line UsageError, and closed (no 'never awaited' warning)."""
    seen: list[bool] = []

    async def twice(args: str) -> str:
        seen.append(CANNOT_AWAIT.get())
        return args * 2

    async def joined(args: str, body: str) -> str:
        return args + body

    async def sleeps(args: str) -> None:
        await asyncio.sleep(0)

    interp.magics.register_line("twice", twice, is_async=True)
    interp.magics.register_cell("joined", joined, is_async=True)
    interp.magics.register_line("sleeps", sleeps, is_async=True)
    code = (
        "r = get_ipython().run_line_magic('twice', 'ab')\n"
        "c = get_ipython().run_cell_magic('joined', 'x', 'y')\n"
        "get_ipython().run_line_magic('sleeps', '')"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        error = _run(interp, code).error
    assert (interp.user_ns["r"], interp.user_ns["c"], seen) == ("abab", "xy", [True])
    assert error is not None
    assert error["ename"] == "UsageError"
    assert error["evalue"].startswith("%sleeps waits on the event loop here")
    assert "\n" not in error["evalue"]
    assert CANNOT_AWAIT.get() is False


def _run(interp: Interpreter, code: str) -> CellOutcome:
    return asyncio.run(interp.run_cell(code))


def _results(published: Published) -> list[str]:
    return [c["data"]["text/plain"] for t, c in published if t == "execute_result"]


def test_async_magic_calls_are_awaited_by_the_transform() -> None:
    names = {"%px", "%%px"}
    assert transform_cell("%px a = 1", async_magics=names) == "(await _loom_magic_('px', 'a = 1'))"
    assert transform_cell("r = %px x", async_magics=names) == "r = (await _loom_magic_('px', 'x'))"
    assert transform_cell("%%px -t 0\nx", async_magics=names) == (
        "await _loom_cell_magic_('px', '-t 0', 'x\\n')\n"
    )
    assert transform_cell("%time x", async_magics=names) == "_loom_magic_('time', 'x')"


def test_load_ext_registers_async_magics_that_cells_await(
    interp: Interpreter, published: Published, ext_name: str
) -> None:
    assert _run(interp, f"%load_ext {ext_name}").status == "ok"
    assert _run(interp, "%later now").status == "ok"
    assert _run(interp, "r = %later x\nr").status == "ok"
    assert _run(interp, "%%later\none\ntwo").status == "ok"
    assert _run(interp, "%plain abc").status == "ok"
    assert _results(published) == ["'later:now'", "'later:x'", "2", "'ABC'"]
    assert {"%later", "%%later"} <= interp.magics.async_names


def test_loading_twice_says_so_and_loads_once(
    interp: Interpreter, ext_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    magics = interp.magics
    assert load_extension(magics, ext_name) is True
    assert _run(interp, f"%load_ext {ext_name}").status == "ok"
    assert capsys.readouterr().out == (
        f"The {ext_name} extension is already loaded. To reload it, use:\n"
        f"  %reload_ext {ext_name}\n"
    )
    assert sys.modules[ext_name].LOADS == [1]


def test_unload_and_reload_call_the_extension_hooks(interp: Interpreter, ext_name: str) -> None:
    assert _run(interp, f"%load_ext {ext_name}").status == "ok"
    assert _run(interp, f"%unload_ext {ext_name}").status == "ok"
    assert "later" not in interp.magics.line
    error = _run(interp, "%later x").error
    assert error is not None
    assert error["evalue"] == "Line magic function `%later` not found."
    assert _run(interp, f"%reload_ext {ext_name}").status == "ok"
    assert "later" in interp.magics.line
    module = sys.modules[ext_name]
    assert (module.LOADS, module.UNLOADS) == ([1], [])  # reloaded: a fresh module
    assert _run(interp, f"%reload_ext {ext_name}").status == "ok"
    assert sys.modules[ext_name].LOADS == [1]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%load_ext no_such_module_xyz", "No module named 'no_such_module_xyz'"),
        ("%load_ext ipy_only_ext", "ipy_only_ext is an IPython extension"),
        ("%load_ext not_an_ext", "not_an_ext is not a Loom extension"),
        ("%load_ext", "%load_ext takes one module name"),
        ("%unload_ext not_an_ext", "The not_an_ext extension is not loaded."),
    ],
)
def test_bad_extensions_are_usage_errors_with_the_reason(
    interp: Interpreter, ext_name: str, line: str, message: str
) -> None:
    error = _run(interp, line).error
    assert error is not None
    assert error["ename"] == "UsageError"
    assert error["evalue"].startswith(message)


def test_an_async_magic_keeps_its_call_site_while_it_awaits(interp: Interpreter) -> None:
    seen: list[tuple[str, int]] = []

    async def where(args: str) -> None:
        await asyncio.sleep(0)
        site = interp.magics.call_site
        seen.append((site.filename, site.lineno))

    interp.magics.register_line("where", where, is_async=True)
    assert _run(interp, "x = 1\n%where").status == "ok"
    assert seen == [(interp.cell_filename(interp.execution_count - 1), 2)]
