"""Interpreter._compile keeps compiled cells: a cell run again is not parsed again.

An engine runs the same small cell over and over (``rc[:].execute("a=1")`` is silent, so
its ``<cell-N>`` filename repeats too). What a rerun must keep: its effects, its result
display, its tracebacks with the cell's source lines.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from kernel.server.interpreter import Interpreter
from kernel.server.interpreter._interpreter import _CACHED_CELLS, _CACHED_SOURCE_MAX

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
Published = list[tuple[str, dict[str, Any]]]


def _run(interp: Interpreter, code: str, *, silent: bool = True) -> Any:
    # store_history=False: the cell number (and so the filename) stays, as on an engine.
    return asyncio.run(interp.run_cell(code, silent=silent, store_history=False))


def test_a_silent_cell_run_again_reuses_its_code_and_runs_again(interp: Interpreter) -> None:
    interp.user_ns["n"] = 0
    for _ in range(3):
        assert _run(interp, "n += 1").status == "ok"
    assert interp.user_ns["n"] == 3
    assert len(interp._compiled) == 1  # compiled once


def test_a_rerun_cell_still_displays_its_value_and_shows_its_lines(
    interp: Interpreter, published: Published
) -> None:
    for x, expected in ((6, "42"), (7, "50")):
        interp.user_ns["x"] = x
        _run(interp, "x * 7 + (x == 7)", silent=False)
        results = [c for t, c in published if t == "execute_result"]
        assert results[-1]["data"]["text/plain"] == expected
    assert len(interp._compiled) == 1
    for _ in range(2):  # the same failing cell, from the cache the second time
        outcome = _run(interp, "def f():\n    return 1 / 0\nf()")
        text = _ANSI.sub("", "\n".join(outcome.error["traceback"]))
        assert "return 1 / 0" in text
    assert len([k for k in interp._compiled if k[0].startswith("def f")]) == 1


def test_the_cache_is_bounded(interp: Interpreter) -> None:
    for i in range(_CACHED_CELLS + 10):
        _run(interp, f"v = {i}")
    assert len(interp._compiled) == _CACHED_CELLS
    assert interp.user_ns["v"] == _CACHED_CELLS + 9
    _run(interp, "w = 1" + " " * _CACHED_SOURCE_MAX)  # too long to keep
    assert interp.user_ns["w"] == 1
    assert all(len(k[0]) <= _CACHED_SOURCE_MAX for k in interp._compiled)
