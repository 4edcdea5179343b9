"""Tracebacks for users: hidden kernel frames, cell names, source, chains, syntax errors."""

from __future__ import annotations

import ast
import json
import linecache
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from kernel.server.interpreter._traceback import format_exception

#: This test file plays the kernel: its frames (the "executor") must not show.
HIDDEN = [__file__]
CELLS = {"<cell-3>": "Cell In[3]", "<cell-4>": "Cell In[4]"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RunCell(Protocol):
    def __call__(self, source: str, filename: str = "<cell-3>") -> BaseException: ...


@pytest.fixture
def run_cell() -> Iterator[RunCell]:
    """Runs source as cell 3 the way the executor will, returning what it raised."""
    registered: list[str] = []

    def run(source: str, filename: str = "<cell-3>") -> BaseException:
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        registered.append(filename)
        try:
            exec(compile(source, filename, "exec"), {"__name__": "__main__"})
        except BaseException as exc:  # the tests want every kind, KeyboardInterrupt too
            return exc
        raise AssertionError("the cell did not raise")

    yield run
    for filename in registered:
        linecache.cache.pop(filename, None)


def _format(exc: BaseException, *, color: bool = False) -> tuple[str, str, str]:
    ename, evalue, lines = format_exception(
        exc, cell_filenames=CELLS, hidden_prefixes=HIDDEN, color=color
    )
    assert all(isinstance(line, str) for line in lines)
    return ename, evalue, "\n".join(lines)


FUNCTION_CELL = """\
def divide(a, b):
    total = a + b
    return a / b

x = 1
divide(x, 0)
"""


def test_ename_and_evalue(run_cell: RunCell) -> None:
    ename, evalue, _ = _format(run_cell(FUNCTION_CELL))
    assert (ename, evalue) == ("ZeroDivisionError", "division by zero")


def test_kernel_frames_are_hidden(run_cell: RunCell) -> None:
    exc = run_cell(FUNCTION_CELL)
    _, _, text = _format(exc)
    assert __file__ not in text
    assert "run_cell" not in text
    _, _, unhidden = format_exception(exc, cell_filenames=CELLS, hidden_prefixes=[], color=False)
    assert any(__file__ in line for line in unhidden)  # the frames are there to hide


def test_frames_show_cell_name_line_function_and_source(run_cell: RunCell) -> None:
    _, _, text = _format(run_cell(FUNCTION_CELL))
    assert text.startswith("ZeroDivisionError")
    assert "Traceback (most recent call last)" in text.splitlines()[0]
    assert "Cell In[3], line 6\n" in text  # module level: no "in <module>"
    assert "Cell In[3], line 3, in divide\n" in text
    assert "----> 3     return a / b" in text
    assert "      2     total = a + b" in text  # context before the failing line
    assert "----> 6 divide(x, 0)" in text
    assert "<cell-3>" not in text
    assert text.rstrip().endswith("ZeroDivisionError: division by zero")


def test_frames_are_in_call_order(run_cell: RunCell) -> None:
    _, _, text = _format(run_cell(FUNCTION_CELL))
    assert text.index("line 6") < text.index("in divide") < text.index("ZeroDivisionError: ")


def test_carets_mark_the_failing_part_of_a_line(run_cell: RunCell) -> None:
    _, _, text = _format(run_cell("values = {'a': 1}\nresult = 2 + values['b'] * 3\n"))
    lines = text.splitlines()
    arrow = next(i for i, line in enumerate(lines) if line.startswith("----> 2"))
    carets = lines[arrow + 1]
    start = lines[arrow].index("values['b']")
    assert carets == " " * start + "^" * len("values['b']")


def test_multi_line_statement_shows_continuation_lines(run_cell: RunCell) -> None:
    _, _, text = _format(run_cell("total = sum(\n    [1, 2],\n    'start',\n)\n"))
    assert "----> 1 total = sum(" in text
    assert "      3     'start'," in text


def test_frames_from_files_show_path_and_line() -> None:
    try:
        json.loads("{broken")
    except ValueError as caught:
        exc = caught
    _, _, text = _format(exc)
    assert re.search(r"File .*json[/\\]decoder\.py:\d+, in JSONDecoder\.raw_decode", text)


def test_tracebackhide_frames_are_hidden(run_cell: RunCell) -> None:
    source = "def helper():\n    __tracebackhide__ = True\n    raise KeyError('k')\n\nhelper()\n"
    _, _, text = _format(run_cell(source))
    assert "Cell In[3], line 5" in text
    assert "in helper" not in text


def test_explicit_cause_is_shown_first_with_separator(run_cell: RunCell) -> None:
    source = "try:\n    {}['missing']\nexcept KeyError as e:\n    raise ValueError('bad') from e\n"
    ename, evalue, text = _format(run_cell(source))
    assert (ename, evalue) == ("ValueError", "bad")
    separator = "The above exception was the direct cause of the following exception:"
    assert text.index("KeyError: 'missing'") < text.index(separator) < text.index("ValueError: bad")
    assert "During handling" not in text


def test_implicit_context_is_shown_with_separator(run_cell: RunCell) -> None:
    source = "try:\n    1 / 0\nexcept ZeroDivisionError:\n    undefined_name\n"
    _, _, text = _format(run_cell(source))
    separator = "During handling of the above exception, another exception occurred:"
    assert text.index("ZeroDivisionError: division by zero") < text.index(separator)
    assert text.index(separator) < text.index("NameError: name 'undefined_name' is not defined")


def test_suppressed_context_is_not_shown(run_cell: RunCell) -> None:
    source = "try:\n    1 / 0\nexcept ZeroDivisionError:\n    raise ValueError('clean') from None\n"
    _, _, text = _format(run_cell(source))
    assert "division by zero" not in text
    assert "During handling" not in text
    assert text.endswith("ValueError: clean")


def test_cyclic_context_terminates() -> None:
    first, second = ValueError("first"), TypeError("second")
    first.__context__, second.__context__ = second, first
    _, _, text = _format(first)
    assert text.count("ValueError: first") == 1
    assert text.count("TypeError: second") == 1


def test_syntax_error_shows_cell_line_and_caret(run_cell: RunCell) -> None:
    source = "x = 1\ny = (x +\n      2\n"
    exc = run_cell(source)
    ename, evalue, text = _format(exc)
    assert ename == "SyntaxError"
    assert evalue == "'(' was never closed (Cell In[3], line 2)"
    assert text.splitlines() == [
        "  Cell In[3], line 2",
        "    y = (x +",
        "        ^",
        "SyntaxError: '(' was never closed",
    ]


def test_syntax_error_in_a_cell_hides_the_path_to_the_parser(run_cell: RunCell) -> None:
    try:
        ast.parse("y = )", filename="<cell-4>")  # a frame in the stdlib, not hidden
    except SyntaxError as caught:
        exc = caught
    _, _, text = _format(exc)
    assert "ast.py" not in text
    assert "Traceback (most recent call last)" not in text
    assert text.startswith("  Cell In[4], line 1\n    y = )\n")


def test_syntax_error_in_a_file_keeps_the_frames(tmp_path: Path) -> None:
    module = tmp_path / "broken_module.py"
    module.write_text("def f(:\n    pass\n", encoding="utf-8")
    try:
        compile(module.read_text(encoding="utf-8"), str(module), "exec")
    except SyntaxError as caught:
        exc = caught
    _, _, lines = format_exception(exc, cell_filenames=CELLS, hidden_prefixes=[], color=False)
    text = "\n".join(lines)
    assert "test_traceback.py" in text  # the frame that compiled it
    assert f"  File {module}:1\n    def f(:\n          ^\n" in text


def test_syntax_error_caret_spans_the_range_and_follows_the_indent() -> None:
    exc = SyntaxError("bad thing", ("<cell-4>", 1, 8, "    if x = 1:\n", 1, 13))
    _, evalue, text = _format(exc)
    assert evalue == "bad thing (Cell In[4], line 1)"
    assert text.splitlines() == [
        "  Cell In[4], line 1",
        "    if x = 1:",
        "       ^^^^^",  # under "x = 1"
        "SyntaxError: bad thing",
    ]


def test_syntax_error_without_text_reads_linecache(run_cell: RunCell) -> None:
    run_cell("raise RuntimeError\n", "<cell-4>")  # registers the source of cell 4
    exc = SyntaxError("oops", ("<cell-4>", 1, 7, None, 1, 8))
    _, _, text = _format(exc)
    assert "    raise RuntimeError\n          ^\nSyntaxError: oops" in text


def test_indentation_error(run_cell: RunCell) -> None:
    ename, _, text = _format(run_cell("if True:\npass\n"))
    assert ename == "IndentationError"
    assert "Cell In[3], line 2" in text
    message = "expected an indented block after 'if' statement on line 1"
    assert text.endswith(f"IndentationError: {message}")


def test_color_on_uses_ansi_and_off_has_none(run_cell: RunCell) -> None:
    exc = run_cell(FUNCTION_CELL)
    _, _, coloured = _format(exc, color=True)
    _, _, plain = _format(exc, color=False)
    assert "\x1b[" in coloured
    assert "\x1b[" not in plain
    assert ANSI.sub("", coloured) == plain


def test_color_off_has_no_escapes_for_syntax_errors_and_chains(run_cell: RunCell) -> None:
    for source in ("x = (", "try:\n    1/0\nexcept Exception as e:\n    raise KeyError from e\n"):
        _, _, plain = _format(run_cell(source), color=False)
        _, _, coloured = _format(run_cell(source), color=True)
        assert "\x1b[" not in plain
        assert "\x1b[" in coloured
        assert ANSI.sub("", coloured) == plain


def test_unprintable_exception() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    ename, evalue, lines = format_exception(
        Unprintable(), cell_filenames=CELLS, hidden_prefixes=HIDDEN, color=False
    )
    assert (ename, evalue) == ("Unprintable", "<unprintable Unprintable object>")
    assert lines == ["Unprintable: <unprintable Unprintable object>"]


def test_exception_without_traceback_is_just_the_final_line() -> None:
    assert _format(ValueError("plain")) == ("ValueError", "plain", "ValueError: plain")
    assert _format(StopIteration()) == ("StopIteration", "", "StopIteration")


def test_formatting_failure_falls_back_to_the_final_line(
    run_cell: RunCell, monkeypatch: pytest.MonkeyPatch
) -> None:
    exc = run_cell(FUNCTION_CELL)

    def broken(*args: object) -> list[str]:
        raise RuntimeError("linecache is broken")

    monkeypatch.setattr(linecache, "getlines", broken)
    final = "ZeroDivisionError: division by zero"
    assert _format(exc) == ("ZeroDivisionError", "division by zero", final)


def test_keyboard_interrupt_shows_only_where_it_stopped(run_cell: RunCell) -> None:
    source = "def inner():\n    raise KeyboardInterrupt\n\ndef outer():\n    inner()\n\nouter()\n"
    ename, _, text = _format(run_cell(source))
    assert ename == "KeyboardInterrupt"
    assert "Cell In[3], line 2, in inner" in text
    assert "in outer" not in text
    assert "line 7" not in text
    assert text.endswith("KeyboardInterrupt")


def test_recursion_is_summarised(run_cell: RunCell) -> None:
    _, _, text = _format(run_cell("def down(n):\n    return down(n + 1)\n\ndown(0)\n"))
    assert text.count("Cell In[3], line 2, in down") == 3
    assert re.search(r"\[Previous frame repeated \d+ more times\]", text)
    assert len(text) < 5_000


def test_cell_filenames_may_be_a_function(run_cell: RunCell) -> None:
    exc = run_cell(FUNCTION_CELL)

    def name(filename: str) -> str | None:
        return "Cell In[99]" if filename == "<cell-3>" else None

    _, _, lines = format_exception(exc, cell_filenames=name, hidden_prefixes=HIDDEN, color=False)
    assert "Cell In[99], line 3, in divide" in "\n".join(lines)

    def broken(filename: str) -> str | None:
        raise RuntimeError("namer broke")

    _, _, lines = format_exception(exc, cell_filenames=broken, hidden_prefixes=HIDDEN, color=False)
    assert "File <cell-3>:3, in divide" in "\n".join(lines)


def test_notes_follow_the_final_line(run_cell: RunCell) -> None:
    source = "e = ValueError('v')\ne.add_note('first note')\ne.add_note('second note')\nraise e\n"
    _, _, text = _format(run_cell(source))
    assert text.endswith("ValueError: v\nfirst note\nsecond note")


def test_exception_group_shows_each_sub_exception(run_cell: RunCell) -> None:
    source = (
        "def fail(kind):\n"
        "    raise kind('inner')\n"
        "errors = []\n"
        "for kind in (ValueError, TypeError):\n"
        "    try:\n"
        "        fail(kind)\n"
        "    except Exception as e:\n"
        "        errors.append(e)\n"
        "raise ExceptionGroup('several', errors)\n"
    )
    ename, evalue, text = _format(run_cell(source))
    assert (ename, evalue) == ("ExceptionGroup", "several (2 sub-exceptions)")
    assert "ExceptionGroup: several (2 sub-exceptions)" in text
    assert text.index("+---------------- 1 ") < text.index("  | ValueError: inner")
    assert text.index("+---------------- 2 ") < text.index("  | TypeError: inner")
    assert "  | Cell In[3], line 2, in fail" in text
