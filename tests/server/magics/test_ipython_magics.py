"""The IPython magics users type every day, on an in-process interpreter: %xmode, the
display cell magics, %%script, %config, %prun, %load_ext autoreload, and history outputs.

The same behaviours are compared with ipykernel's, output for output, by the differential
notebook tests in ``tests/conformance/test_ipykernel_parity.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kernel.server.interpreter import _inline_figures
from kernel.server.interpreter._interpreter import CellOutcome, Interpreter

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Session:
    interp: Interpreter
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def run(self, code: str) -> CellOutcome:
        self.messages.clear()
        return asyncio.run(self.interp.run_cell(code))

    def ok(self, code: str) -> CellOutcome:
        outcome = self.run(code)
        assert outcome.status == "ok", outcome.error
        return outcome

    def error(self, code: str) -> dict[str, Any]:
        outcome = self.run(code)
        assert outcome.status == "error"
        assert outcome.error is not None
        return outcome.error

    def displays(self) -> list[dict[str, Any]]:
        return [c for t, c in self.messages if t == "display_data"]

    def results(self) -> list[str]:
        return [c["data"]["text/plain"] for t, c in self.messages if t == "execute_result"]


@pytest.fixture
def session() -> Iterator[Session]:
    messages: list[tuple[str, dict[str, Any]]] = []
    interp = Interpreter(lambda msg_type, content: messages.append((msg_type, content)))
    yield Session(interp, messages)
    interp.history.close()


def plain_traceback(error: dict[str, Any]) -> list[str]:
    return [_ANSI.sub("", part) for part in error["traceback"]]


# -- %xmode -----------------------------------------------------------------------------------


def test_xmode_minimal_shows_only_the_last_line(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    session.ok("%xmode Minimal")
    assert capsys.readouterr().out == "Exception reporting mode: Minimal\n"
    error = session.error("raise ValueError('a') from KeyError('b')")
    assert plain_traceback(error) == ["ValueError: a\n"]


def test_xmode_plain_is_pythons_layout_with_cell_names(session: Session) -> None:
    session.ok("%xmode plain")
    session.ok("def g():\n    return 1 / 0")
    error = session.error("g()")
    assert plain_traceback(error) == [
        "Traceback (most recent call last):\n",
        "  Cell In[3], line 1\n    g()\n",
        "  Cell In[2], line 2 in g\n    return 1 / 0\n",
        "ZeroDivisionError: division by zero\n",
    ]


def test_xmode_verbose_shows_arguments_and_whole_functions(session: Session) -> None:
    session.ok("%xmode Verbose")
    session.ok("def h(x, *rest, key=3):\n    y = x + 1\n    return y / 0")
    text = "\n".join(plain_traceback(session.error("h(1, 2)")))
    assert "in h(x=1, key=3, *rest=(2,))" in text
    assert "      1 def h(x, *rest, key=3):" in text


def test_xmode_without_a_mode_goes_to_the_next_and_rejects_unknown_ones(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    session.ok("%xmode")
    assert capsys.readouterr().out == "Exception reporting mode: Verbose\n"
    assert session.error("%xmode Fancy")["ename"] == "UsageError"


# -- display cell magics ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("magic", "mime"),
    [
        ("html", "text/html"),
        ("markdown", "text/markdown"),
        ("latex", "text/latex"),
        ("javascript", "application/javascript"),
        ("js", "application/javascript"),
    ],
)
def test_display_cell_magics_show_the_cell_as_that_type(
    session: Session, magic: str, mime: str
) -> None:
    session.ok(f"%%{magic}\nsome <b>text</b>")
    [display] = session.displays()
    assert display["data"][mime] == "some <b>text</b>\n"  # the body ends with a newline
    assert "text/plain" in display["data"]


def test_html_isolated_and_svg(session: Session) -> None:
    session.ok("%%html --isolated\n<p>x</p>")
    assert session.displays()[0]["metadata"] == {"text/html": {"isolated": True}}
    session.ok("%%svg\n<svg xmlns='http://www.w3.org/2000/svg'/>")
    assert "<svg" in session.displays()[0]["data"]["image/svg+xml"]


# -- %%script ---------------------------------------------------------------------------------


def test_script_feeds_the_cell_to_the_program_on_stdin(
    session: Session, capfd: pytest.CaptureFixture[str]
) -> None:
    session.ok(f"%%script {sys.executable}\nimport sys\nprint('from', sys.stdin is not None)")
    assert capfd.readouterr().out == "from True\n"
    session.ok("%%script cat\nline one\nline two")
    assert capfd.readouterr().out == "line one\nline two\n"


def test_script_shortcuts_store_output_and_raise_on_failure(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    session.ok("%%python --out captured\nprint(6 * 7)")
    assert session.interp.user_ns["captured"] == "42\n"
    error = session.error("%%python3\nraise SystemExit(3)")
    assert error["ename"] == "CalledProcessError"
    assert error["evalue"].startswith("Command 'b'raise SystemExit(3)")  # bytes, as IPython
    session.ok("%%script --no-raise-error sh\nexit 3")
    # A missing program is a line of output, as in IPython (a notebook goes on), in the
    # background too.
    capsys.readouterr()
    session.ok("%%script no-such-program-here\n")
    session.ok("%%script --bg --out lines no-such-program-here\n")
    assert capsys.readouterr().out == "Couldn't find program: 'no-such-program-here'\n" * 2
    assert session.interp.user_ns["lines"] == ""  # set before the program is looked for


@pytest.mark.timeout(60)
def test_script_bg_ends_the_cell_at_once_and_killbgscripts_ends_the_program(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    # As IPython 9: --bg returns while the program runs (it sleeps a minute here, longer
    # than this test may take); --out/--proc name awaitable stream and process proxies.
    scripts = session.interp.magics.line["killbgscripts"].__self__  # type: ignore[attr-defined]
    try:
        session.ok(
            f"%%script --bg --out out --proc proc {sys.executable}\n"
            "import time\nprint('started', flush=True)\ntime.sleep(60)"
        )
        session.ok("line = await out.readline()")
        assert session.interp.user_ns["line"] == b"started\n"
        assert session.interp.user_ns["proc"].returncode is None
        capsys.readouterr()
        session.ok("%killbgscripts")
        assert capsys.readouterr().out == "All background processes were killed.\n"
        session.ok("code = await proc.wait()")
        assert session.interp.user_ns["code"] == -signal.SIGINT  # the first signal sufficed
        # The cell reaches the program on stdin; its exit status and stderr are kept, and
        # a non-zero status raises nothing (nobody waits for it).
        session.ok("%%script --bg --err err --proc proc sh\necho oops >&2\nexit 3")
        session.ok("code = await proc.wait()\ntext = await err.read()")
        assert session.interp.user_ns["code"] == 3
        assert session.interp.user_ns["text"] == b"oops\n"
    finally:
        scripts.close_background()  # later tests check that no thread is left running
    assert [t for t in threading.enumerate() if t.name == "loom-background-scripts"] == []


def test_script_input_larger_than_a_pipe_does_not_deadlock(session: Session) -> None:
    # The child writes as it reads: both pipes fill unless stdin is fed as it drains.
    body = "x" * 200_000 + "\n"
    session.ok(f"%%script --out copy cat\n{body}")
    assert session.interp.user_ns["copy"] == body


# -- %config ----------------------------------------------------------------------------------


def test_config_sets_inline_backend_formats_and_refuses_the_unknown(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        session.ok("%config InlineBackend.figure_formats = ['svg', 'png2x']")
        assert _inline_figures.config.figure_formats == {"svg", "retina"}
        session.ok("%config InlineBackend.figure_format = 'jpg'")
        assert _inline_figures.config.figure_formats == {"jpeg"}
        session.ok("%config InlineBackend")
        assert "figure_formats" in capsys.readouterr().out
        session.ok("%config InteractiveShell.xmode = 'Minimal'")
        assert session.interp.xmode == "Minimal"
        error = session.error("%config IPCompleter.greedy = True")
        assert error["ename"] == "UsageError"
        assert "not a setting of Loom's kernel" in error["evalue"]
    finally:
        _inline_figures.config.figure_formats = {"png"}
        _inline_figures.config.figure_format = ""


def test_config_of_one_setting_is_its_value(session: Session) -> None:
    # As IPython: `%config Class.trait` (no `=`) is the setting's current value, so a cell
    # can read it (`fmts = %config InlineBackend.figure_formats`).
    try:
        session.ok("%config InlineBackend.figure_formats")
        assert session.results() == ["{'png'}"]
        session.ok("%config InlineBackend.figure_format")
        assert session.results() == ["''"]  # IPython's default: only ever set, not derived
        session.ok("%config InlineBackend.figure_format = 'svg'")
        session.ok(
            "fmt = %config InlineBackend.figure_format\n"
            "formats = %config InlineBackend.figure_formats"
        )
        assert session.interp.user_ns["fmt"] == "svg"
        assert session.interp.user_ns["formats"] == {"svg"}
        session.ok("%config InlineBackend.close_figures")
        assert session.results() == ["True"]
        session.ok("%config InlineBackend.print_figure_kwargs")
        assert session.results() == ["{'bbox_inches': 'tight'}"]
        session.ok("%config ZMQInteractiveShell.xmode")
        assert session.results() == ["'Context'"]
        error = session.error("%config InlineBackend.nosuch")
        assert error["ename"] == "UsageError"
        assert "InlineBackend.nosuch is not a setting" in error["evalue"]
    finally:
        _inline_figures.config.figure_formats = {"png"}
        _inline_figures.config.figure_format = ""


def test_figures_use_the_configured_formats(session: Session) -> None:
    pytest.importorskip("matplotlib")
    try:
        session.ok("%config InlineBackend.figure_formats = ['svg', 'retina']")
        session.ok("%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])")
        [figure] = session.displays()
        assert set(figure["data"]) == {"image/svg+xml", "image/png", "text/plain"}
        size = figure["metadata"]["image/png"]
        assert size["width"] > 100
        assert size["height"] > 100
    finally:
        _inline_figures.config.figure_formats = {"png"}


# -- %prun ------------------------------------------------------------------------------------


def test_prun_pages_the_statistics_and_can_return_them(session: Session) -> None:
    # work's own loop is most of the run's internal time, so -l 3 keeps it however the
    # few microseconds of the other calls happen to order them.
    outcome = session.ok(
        "def work():\n    t = 0\n    for i in range(200_000):\n        t += i\n    return t\n"
        "%prun -l 3 work()"
    )
    [page] = outcome.payload
    assert page["source"] == "page"
    assert "function calls" in page["data"]["text/plain"]
    assert "work" in page["data"]["text/plain"]
    session.ok("stats = %prun -q -r work()")
    assert session.interp.user_ns["stats"].total_calls >= 2


# -- autoreload -------------------------------------------------------------------------------


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    name = f"loom_autoreload_{uuid.uuid4().hex[:8]}"
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / f"{name}.py", name
    sys.modules.pop(name, None)


def _write(path: Path, source: str) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    if path.stat().st_mtime_ns <= before:  # a file system with coarse timestamps
        os.utime(path, ns=(before + 10**9, before + 10**9))


def test_autoreload_2_reloads_edited_modules_and_updates_old_objects(
    session: Session, module_dir: tuple[Path, str]
) -> None:
    path, name = module_dir
    _write(path, "def f():\n    return 1\nclass C:\n    def m(self):\n        return 'old'\n")
    session.ok("%load_ext autoreload\n%autoreload 2")
    session.ok(f"import {name}\nfrom {name} import f\nobj = {name}.C()")
    _write(path, "def f():\n    return 2\nclass C:\n    def m(self):\n        return 'new'\n")
    session.ok(f"f(), obj.m(), {name}.f()")
    assert session.results() == ["(2, 'new', 2)"]


def test_autoreload_keeps_the_old_code_when_the_edit_does_not_compile(
    session: Session, module_dir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path, name = module_dir
    _write(path, "def f():\n    return 1\n")
    session.ok(f"%load_ext autoreload\n%autoreload 2\nimport {name}")
    _write(path, "def f(:\n")
    session.ok(f"{name}.f()")
    assert session.results() == ["1"]
    assert f"[autoreload of {name} failed" in capsys.readouterr().err


def test_autoreload_1_reloads_only_aimported_modules_and_0_none(
    session: Session, module_dir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path, name = module_dir
    _write(path, "X = 1\n")
    session.ok(f"%load_ext autoreload\n%autoreload 1\n%aimport {name}")
    _write(path, "X = 2\n")
    session.ok(f"{name}.X")
    assert session.results() == ["2"]
    session.ok("%aimport")
    assert capsys.readouterr().out == f"Modules to reload:\n{name}\n\nModules to skip:\n\n"
    session.ok("%autoreload 0")
    _write(path, "X = 3\n")
    session.ok(f"{name}.X")
    assert session.results() == ["2"]
    session.ok(f"%autoreload now\n{name}.X")
    assert session.results() == ["3"]


def test_unloading_autoreload_removes_its_magics_and_hooks(session: Session) -> None:
    magics = session.interp.magics
    hooks = len(magics.pre_execute)
    session.ok("%load_ext autoreload")
    assert "autoreload" in magics.line
    assert len(magics.pre_execute) == hooks + 1
    session.ok("%unload_ext autoreload")
    assert "autoreload" not in magics.line
    assert len(magics.pre_execute) == hooks


# -- history outputs --------------------------------------------------------------------------


def test_history_range_with_output_returns_this_sessions_results(session: Session) -> None:
    session.ok("6 * 7")
    session.ok("x = 1")
    session.ok("'text'")
    reply = session.interp.history_reply(
        {"hist_access_type": "range", "session": 0, "start": 1, "stop": None, "output": True}
    )
    session_id = session.interp.history.session
    assert reply == [
        [session_id, 1, ["6 * 7", "42"]],
        [session_id, 2, ["x = 1", None]],
        [session_id, 3, ["'text'", "'text'"]],
    ]


def test_a_failing_pre_execute_hook_is_reported_and_the_cell_still_runs(
    session: Session,
) -> None:
    def broken() -> None:
        raise RuntimeError("hook failed")

    session.interp.magics.pre_execute.append(broken)
    outcome = session.run("41 + 1")
    assert outcome.status == "ok"
    assert [t for t, _ in session.messages] == ["error", "execute_result"]


def test_script_uses_a_real_child_process(session: Session) -> None:
    # The cell really runs in another process, with the kernel's interpreter.
    session.ok("%%python --out pid\nimport os; print(os.getpid())")
    assert int(session.interp.user_ns["pid"]) != os.getpid()


# -- get_ipython() ------------------------------------------------------------------------------


def test_get_ipython_events_run_around_every_cell(session: Session) -> None:
    session.ok(
        "seen = []\n"
        "ip = get_ipython()\n"
        "ip.events.register('pre_run_cell', lambda info: seen.append(('pre', info.raw_cell)))\n"
        "ip.events.register('post_execute', lambda: seen.append('post'))\n"
        "ip.events.register('post_run_cell', lambda result: seen.append(result.success))"
    )
    session.run("1 / 0")
    seen = session.interp.user_ns["seen"]
    assert seen[-3:] == [("pre", "1 / 0"), "post", False]
    assert session.error("get_ipython().events.register('no_such_event', print)")["ename"] == (
        "KeyError"
    )


def test_get_ipython_runs_magics_and_registers_new_ones(session: Session) -> None:
    session.ok("get_ipython().run_line_magic('xmode', 'Minimal')")
    assert session.interp.xmode == "Minimal"
    session.ok(
        "def shout(line):\n    return line.upper()\n"
        "get_ipython().register_magic_function(shout)\n"
        "get_ipython().push({'pushed': 7})"
    )
    session.ok("%shout quiet")
    assert session.results() == ["'QUIET'"]
    assert session.interp.user_ns["pushed"] == 7


def test_with_ipython_imported_get_ipython_is_an_honest_interactive_shell(
    session: Session,
) -> None:
    pytest.importorskip("IPython")
    session.ok(
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "from IPython.core.magic import register_line_magic\n"
        "import IPython\n"
        "ip = IPython.get_ipython()\n"
        "@register_line_magic\ndef twice(line):\n    return line * 2\n"
        "(isinstance(ip, InteractiveShell), ip is get_ipython(),\n"
        " hasattr(ip, 'history_manager'), getattr(ip, 'kernel', None))"
    )
    assert session.results() == ["(True, True, False, None)"]
    session.ok("%twice ab")
    assert session.results() == ["'abab'"]
    error = session.error("get_ipython().run_cell('1')")
    assert error["ename"] == "AttributeError"
    assert "Loom's kernel is not IPython's shell" in error["evalue"]


def test_capture_takes_its_options_after_the_name_too(session: Session) -> None:
    # IPython's own example notebook ("Capturing Output") writes `%%capture cap --no-stderr`.
    session.ok("%%capture cap --no-stderr\nprint('out')")
    assert session.interp.user_ns["cap"].stdout == "out\n"
    error = session.error("%%capture cap surplus\nprint('x')")
    assert error["evalue"] == "%%capture: unexpected arguments: surplus"


# -- get_ipython().display_formatter.formatters ---------------------------------------------


def test_a_printer_registered_with_for_type_formats_results_and_displays(
    session: Session,
) -> None:
    session.ok(
        textwrap.dedent(
            """
            class Poly:
                def _repr_latex_(self):
                    return "$own$"
            formatters = get_ipython().display_formatter.formatters
            names = {mime: type(f).__name__ for mime, f in formatters.items()}
            """
        )
    )
    names = session.interp.user_ns["names"]
    assert names["text/latex"] == "LatexFormatter"
    assert names["text/plain"] == "PlainTextFormatter"
    session.ok("Poly()")
    assert session.messages[-1][1]["data"]["text/latex"] == "$own$"  # nothing registered yet

    session.ok("formatters['text/latex'].for_type(Poly, lambda p: '$registered$')")
    session.ok("Poly()")
    assert session.messages[-1][1]["data"]["text/latex"] == "$registered$"
    session.ok("from IPython.display import display; display(Poly())")
    assert session.displays()[0]["data"]["text/latex"] == "$registered$"
    session.ok("formatters['text/html'].for_type_by_name('__main__', 'Poly', lambda p: '<b>p</b>')")
    session.ok("Poly()")
    data = session.messages[-1][1]["data"]
    assert (data["text/html"], data["text/latex"]) == ("<b>p</b>", "$registered$")
    session.ok("1.5")
    assert session.messages[-1][1]["data"] == {"text/plain": "1.5"}  # defaults stay Loom's
