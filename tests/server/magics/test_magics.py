"""Magics, shell commands and help, run through a real Interpreter as the kernel wires them."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kernel.server.interpreter._interpreter import CellOutcome, Interpreter
from kernel.server.interpreter._transform import transform_cell
from kernel.server.magics import _timing as _magic_timing
from kernel.server.magics._args import UsageError, expand_vars, split_options
from kernel.server.magics._files import select_lines
from kernel.server.magics._history_magics import parse_ranges
from kernel.server.magics._output_magics import CapturedIO
from kernel.server.magics._registry import HELPERS, Magics
from kernel.server.magics._system import SList, getoutput, system
from kernel.server.magics._timing import TimeitResult, format_time

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Session:
    """An interpreter with magics installed, recording what it publishes."""

    interp: Interpreter
    magics: Magics
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def ns(self) -> dict[str, Any]:
        return self.interp.user_ns

    def run(self, code: str) -> CellOutcome:
        self.messages.clear()
        outcome = asyncio.run(self.interp.run_cell(code))
        self.magics.run_post_execute()
        return outcome

    def ok(self, code: str) -> CellOutcome:
        outcome = self.run(code)
        assert outcome.status == "ok", outcome.error
        return outcome

    def error(self, code: str) -> dict[str, Any]:
        outcome = self.run(code)
        assert outcome.status == "error"
        assert outcome.error is not None
        return outcome.error

    def results(self) -> list[str]:
        return [c["data"]["text/plain"] for t, c in self.messages if t == "execute_result"]

    def displays(self) -> list[dict[str, Any]]:
        return [c for t, c in self.messages if t == "display_data"]


@pytest.fixture
def session() -> Iterator[Session]:
    messages: list[tuple[str, dict[str, Any]]] = []
    interp = Interpreter(publish=lambda msg_type, content: messages.append((msg_type, content)))
    interp.transform = transform_cell
    magics = Magics(interp)
    magics.install(interp.user_ns)
    yield Session(interp, magics, messages)
    interp.history.close()


def plain(traceback: list[str]) -> str:
    return _ANSI.sub("", "\n".join(traceback))


# -- the registry ---------------------------------------------------------------------------


def test_unknown_line_magic_is_a_usage_error(session: Session) -> None:
    error = session.error("%nosuchmagic 1 2")
    assert error["ename"] == "UsageError"
    assert error["evalue"] == "Line magic function `%nosuchmagic` not found."


def test_unknown_cell_magic_and_wrong_kind_hints(session: Session) -> None:
    assert session.error("%%nosuch\nbody")["evalue"] == "Cell magic `%%nosuch` not found."
    assert "did you mean that instead" in session.error("%%pwd\nx")["evalue"]
    assert "did you mean that instead" in session.error("%bash")["evalue"]
    late = session.error("x = 1\n%%time\ny = 2")
    assert late["evalue"] == "Cell magic `%%time` must be on the first line of a cell."


def test_install_defines_the_helpers_once(session: Session) -> None:
    helpers = session.magics.helpers()
    assert set(helpers) == set(HELPERS)
    assert all(session.ns[name] is helper for name, helper in helpers.items())
    assert session.magics.helpers()["_loom_magic_"] is helpers["_loom_magic_"]


def test_names_for_completion(session: Session) -> None:
    names = session.magics.names()
    for name in ("%time", "%timeit", "%cd", "%env", "%%bash", "%%capture", "%%writefile"):
        assert name in names
    assert names.index("%whos") < names.index("%%bash")


def test_register_custom_magics_with_expansion(session: Session) -> None:
    session.magics.register_line("shout", lambda line: line.upper())
    session.magics.register_cell("lines", lambda line, body: (line, body.splitlines()))
    session.magics.register_line("raw", lambda line: line, expand=False)
    session.ok("name = 'loom'\n%shout hello {name} $name")
    assert session.results() == ["'HELLO LOOM LOOM'"]
    session.ok("%%lines {1 + 1}\na\nb")
    assert session.results() == ["('2', ['a', 'b'])"]
    session.ok("%raw {name}")
    assert session.results() == ["'{name}'"]


def test_magic_inside_a_function_expands_its_locals(session: Session) -> None:
    session.magics.register_line("echo", lambda line: line)
    session.ok("def f(n):\n    r = %echo n={n}\n    return r\nf(3)")
    assert session.results() == ["'n=3'"]


def test_lsmagic_lists_both_kinds(session: Session) -> None:
    # The list is the cell's value, in IPython's (9.x) layout; --json gives the names as a dict.
    session.ok("listing = %lsmagic")
    listing = session.ns["listing"]
    assert isinstance(listing, str)
    lines = listing.split("\n")
    assert lines[0] == "Available line magics:"
    assert "%timeit" in lines[1].split("  ")
    assert lines[3] == "Available cell magics:"
    assert "%%writefile" in lines[4].split("  ")
    assert lines[6] == "Automagic is OFF, % prefix IS needed for line magics."
    session.ok("names = %lsmagic --json")
    names = session.ns["names"]
    assert names["line"]["timeit"] == "_TimingMagics"
    assert names["cell"]["writefile"] != ""
    assert set(names["line"]) == set(session.magics.line)
    assert session.error("%lsmagic extra")["evalue"] == "%lsmagic: unexpected arguments: extra"


def test_post_execute_runs_every_callback_then_raises_the_first(session: Session) -> None:
    calls: list[str] = []

    def failing() -> None:
        calls.append("fail")
        raise RuntimeError("boom")

    session.magics.post_execute += [failing, lambda: calls.append("second")]
    with pytest.raises(RuntimeError, match="boom"):
        session.magics.run_post_execute()
    assert calls == ["fail", "second"]


# -- help -----------------------------------------------------------------------------------


def test_help_pages_an_object(session: Session) -> None:
    outcome = session.ok("def fn():\n    'The doc of fn.'\nfn?")
    [page] = outcome.payload
    assert page["source"] == "page"
    assert page["start"] == 0
    assert "The doc of fn." in page["data"]["text/plain"]
    detailed = session.ok("fn??").payload[0]["data"]["text/plain"]
    assert "def fn():" in detailed


def test_help_for_a_missing_object(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = session.ok("no_such_name?")
    assert outcome.payload == []
    assert capsys.readouterr().out == "Object `no_such_name` not found.\n"


def test_help_for_magics_wildcards_and_usage(session: Session) -> None:
    text = session.ok("%timeit?").payload[0]["data"]["text/plain"]
    assert "Time a Python statement" in text
    assert "Run the cell with ``bash``" in session.ok("%%bash?").payload[0]["data"]["text/plain"]
    names = session.ok("isinst*?").payload[0]["data"]["text/plain"]
    assert names.splitlines() == ["isinstance"]
    assert "os.path" in session.ok("import os\nos.pat*?").payload[0]["data"]["text/plain"]
    assert "IPython's syntax" in session.ok("?").payload[0]["data"]["text/plain"]


# -- %time and %timeit ------------------------------------------------------------------------


def test_time_prints_times_and_returns_the_value(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    session.ok("x = 20\n%time x + 1")
    assert session.results() == ["21"]
    out = capsys.readouterr().out
    assert re.fullmatch(
        r"CPU times: user .+, sys: .+, total: .+\nWall time: \d[\d.]* (s|ms|μs|ns)\n", out
    )
    session.ok("%time y = 5")
    assert session.results() == []
    assert session.ns["y"] == 5


def test_time_cell_runs_the_body_with_ipython_syntax(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    session.ok("%%time\nz = 2\nw = %pwd\nz * 3")
    assert session.results() == ["6"]
    assert session.ns["w"] == os.getcwd()
    assert "Wall time:" in capsys.readouterr().out
    assert session.error("%%time x = 1\npass")["ename"] == "UsageError"


@pytest.mark.parametrize(
    ("body", "shown"),
    [("41 + 1", True), ("41 + 1;", False), ("41 + 1; # quiet", False), ("41 + 1  # note;", True)],
)
def test_a_cell_and_a_timed_body_agree_on_the_semicolon_rule(
    session: Session, body: str, shown: bool
) -> None:
    # One rule (interpreter._compile.ends_quietly): `x; # c` was quiet as a cell but
    # shown as a %%time body, and `x  # note;` the other way round.
    session.ok(body)
    assert session.results() == (["42"] if shown else [])
    session.ok(f"%%time\n{body}")
    assert session.results() == (["42"] if shown else [])


def test_errors_in_timed_code_point_at_the_cell_line(session: Session) -> None:
    error = session.error("%%time\na = 1\nb = a / 0")
    assert error["ename"] == "ZeroDivisionError"
    assert "----> 3 b = a / 0" in plain(error["traceback"])
    error = session.error("x = 1\n%time x / 0")
    assert "----> 2 %time x / 0" in plain(error["traceback"])


def test_timeit_with_loops_and_runs(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    session.ok("x = 3\n%timeit -n 5 -r 2 x * 2")
    out = capsys.readouterr().out
    assert re.fullmatch(
        r"\d[\d.]* (s|ms|μs|ns) ± \d[\d.]* (s|ms|μs|ns) per loop "
        r"\(mean ± std\. dev\. of 2 runs, 5 loops each\)\n",
        out,
    )


def test_timeit_chooses_the_loop_count_and_runs_seven_times_as_ipython(
    session: Session, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_magic_timing, "MIN_RUN_TIME", 0.002)
    session.ok("result = %timeit -o -q sum(range(10))")
    result = session.ns["result"]
    assert isinstance(result, TimeitResult)
    assert result.loops >= 10
    assert len(result.all_runs) == result.repeat == 7
    assert result.best <= result.average <= result.worst
    assert capsys.readouterr().out == ""


def test_timeit_reports_seven_runs_of_a_fast_statement(
    session: Session, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_magic_timing, "MIN_RUN_TIME", 0.002)
    session.ok("%timeit -t pass")
    out = capsys.readouterr().out
    assert re.search(r"per loop \(mean ± std\. dev\. of 7 runs, [\d,]+ loops each\)\n$", out)


def test_timeit_cell_runs_setup_and_keeps_user_names(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    session.ok("base = 10")
    session.ok("%%timeit -n3 -r1 -o items = list(range(base))\ntotal = sum(items)")
    assert "of 1 run, 3 loops each" in capsys.readouterr().out
    assert "total" not in session.ns
    assert session.results()[0].startswith("<TimeitResult : ")


def test_timeit_errors(session: Session) -> None:
    error = session.error("%timeit -n1 -r1 undefined_name")
    assert error["ename"] == "NameError"
    assert "----> 1 %timeit -n1 -r1 undefined_name" in plain(error["traceback"])
    assert session.error("%timeit -n 0 pass")["ename"] == "UsageError"


def test_format_time() -> None:
    assert format_time(1.5) == "1.5 s"
    assert format_time(0.0123) == "12.3 ms"
    # IPython writes the Greek letter mu (U+03BC), not the micro sign (U+00B5).
    assert format_time(2.5e-6) in ("2.5 \u03bcs", "2.5 us")
    assert format_time(4e-9) == "4 ns"
    assert format_time(0) == "0 ns"
    assert format_time(65) == "1min 5s"


# -- shell ------------------------------------------------------------------------------------


def test_shell_capture_returns_an_slist(session: Session) -> None:
    session.ok("x = !echo hi")
    assert session.ns["x"] == ["hi"]
    assert isinstance(session.ns["x"], SList)
    session.ok("y = !printf 'a 1\\nb 2\\n'")
    lines = session.ns["y"]
    assert (lines.s, lines.n, lines.l, lines.list) == ("a 1 b 2", "a 1\nb 2", lines, lines)
    assert lines.grep("b") == ["b 2"]
    assert lines.fields(1) == ["1", "2"]


def test_shell_streams_through_the_file_descriptor(
    session: Session, capfd: pytest.CaptureFixture[str]
) -> None:
    session.ok("print('before', flush=True)\n!echo out; echo err >&2\nprint('after')")
    captured = capfd.readouterr()
    assert captured.out == "before\nout\nafter\n"
    assert captured.err == "err\n"
    assert session.ns["_exit_code"] == 0


def test_shell_without_a_file_descriptor_is_copied(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    # capsys's sys.stdout has no fileno(): the output goes through a pipe into it.
    session.ok("n = 7\n!echo {n * 6} $n; exit 3")
    assert capsys.readouterr().out == "42 7\n"
    assert session.ns["_exit_code"] == 3


def test_shell_expansion_is_all_or_nothing(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    session.ok("x = 1\n!echo {undefined} $x")  # {undefined} fails, so $x is not expanded
    assert capsys.readouterr().out == "{undefined}\n"  # and the shell expands $x to nothing


def test_getoutput_merges_stderr() -> None:
    assert getoutput("echo a; echo b >&2") == ["a", "b"]


def test_interrupting_a_command_stops_it() -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        with pytest.raises(KeyboardInterrupt):
            system("sleep 30")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 10


def test_bash_and_sh_cells(session: Session, capfd: pytest.CaptureFixture[str]) -> None:
    session.ok("%%bash\nfor i in 1 2; do echo line$i; done\necho oops >&2")
    captured = capfd.readouterr()
    assert captured.out == "line1\nline2\n"
    assert captured.err == "oops\n"
    session.ok("%%sh\necho from sh")
    assert capfd.readouterr().out == "from sh\n"
    error = session.error("%%bash\nexit 4")
    assert error["ename"] == "CalledProcessError"
    assert "exit status 4" in error["evalue"]
    session.ok("%%bash --no-raise-error\nexit 4")


def test_bash_can_store_its_output(session: Session, capfd: pytest.CaptureFixture[str]) -> None:
    session.ok("%%bash --out o --err e\necho hi\necho ho >&2")
    assert (session.ns["o"], session.ns["e"]) == ("hi\n", "ho\n")
    assert capfd.readouterr().out == ""


def test_cd_and_pwd(
    session: Session,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    (tmp_path / "sub dir").mkdir()
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    session.ok("%cd 'sub dir'")
    assert Path.cwd() == tmp_path / "sub dir"
    session.ok("%pwd")
    assert session.results() == [repr(str(tmp_path / "sub dir"))]
    session.ok("%cd -")
    assert Path.cwd() == tmp_path
    session.ok("%cd")
    assert Path.cwd() == home
    assert capsys.readouterr().out.splitlines() == [
        str(tmp_path / "sub dir"),
        str(tmp_path),
        str(home),
    ]
    assert session.error("%cd /no/such/dir")["ename"] == "UsageError"


def test_env(
    session: Session, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOM_TEST_VAR", "before")
    monkeypatch.setenv("LOOM_API_TOKEN", "s3cret")
    session.ok("%env LOOM_TEST_VAR")
    assert session.results() == ["'before'"]
    session.ok("v = 41\n%env LOOM_TEST_VAR={v + 1}")
    assert os.environ["LOOM_TEST_VAR"] == "42"
    session.ok("%env LOOM_TEST_VAR spaced value")
    assert os.environ["LOOM_TEST_VAR"] == "spaced value"
    assert capsys.readouterr().out == "env: LOOM_TEST_VAR=42\nenv: LOOM_TEST_VAR=spaced value\n"
    session.ok("everything = %env")
    assert session.ns["everything"]["LOOM_TEST_VAR"] == "spaced value"
    assert session.ns["everything"]["LOOM_API_TOKEN"] == "<hidden>"
    assert session.error("%env LOOM_NO_SUCH_VAR")["ename"] == "UsageError"


def test_pip_runs_in_the_kernel_python(session: Session, capfd: pytest.CaptureFixture[str]) -> None:
    session.ok("%pip --version")
    out = capfd.readouterr().out
    assert out.startswith("pip ")
    assert "restart the kernel" in out


# -- namespace ---------------------------------------------------------------------------------


def test_who_whos_who_ls(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    session.ok("%who")
    assert capsys.readouterr().out == "Interactive namespace is empty.\n"
    session.ok("alpha = 123\nbeta = 'test'\n_private = 1\nlong = 'x' * 80\nitems = [1, 2]")
    session.ok("%who")
    assert capsys.readouterr().out.split() == ["alpha", "beta", "items", "long"]
    session.ok("%who_ls int")
    assert session.results() == ["['alpha']"]
    session.ok("%whos")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["Variable", "Type", "Data/Info"]
    assert set(lines[1]) == {"-"}
    assert lines[2].split() == ["alpha", "int", "123"]
    assert lines[4].split() == ["items", "list", "n=2"]
    assert lines[5].split()[2] == "x" * 25 + "<...>" + "x" * 25
    session.ok("%who float")
    assert capsys.readouterr().out == "No variables match your requested type.\n"


def test_rebinding_a_kernel_name_makes_it_a_user_variable(session: Session) -> None:
    session.ok("display = 5\n%who_ls")
    assert session.results() == ["['display']"]


def test_reset(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    session.ok("a = 1\nb = 2\ndisplay = None\na")
    session.ok("%reset")
    assert "cannot ask for confirmation" in capsys.readouterr().out
    assert "a" not in session.ns
    assert session.ns["Out"] == {}
    assert callable(session.ns["display"])
    assert callable(session.ns["_loom_magic_"])
    session.ok("c = 3\nc")
    session.ok("%reset -f -s")
    assert capsys.readouterr().out == ""
    assert "c" not in session.ns
    assert list(session.ns["Out"].values()) == [3]
    session.ok("%reset -f out")
    assert session.ns["Out"] == {}
    assert session.error("%reset -f bogus")["ename"] == "UsageError"


# -- files ------------------------------------------------------------------------------------


def test_run_a_script(session: Session, tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        "import sys\nargs = sys.argv[1:]\nname = __name__\nseen = 'mine' in globals()\n"
    )
    argv = list(sys.argv)
    session.ok(f"mine = 1\n%run {script} a 'b c'")
    assert session.ns["args"] == ["a", "b c"]
    assert session.ns["name"] == "__main__"
    assert session.ns["seen"] is False
    assert session.ns["__name__"] == "__main__"
    assert sys.argv == argv
    session.ok(f"%run -i {str(script)[:-3]}")
    assert session.ns.get("seen") is True  # -i: the script saw the variable
    assert "__file__" not in session.ns


def test_run_exit_and_errors(session: Session, tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("import sys\nbefore = 1\nsys.exit(0)\nafter = 1\n")
    (tmp_path / "bad.py").write_text("x = 1\nraise SystemExit(2)\n")
    (tmp_path / "cmds.ipy").write_text("where = %pwd\n")
    session.ok(f"%run {tmp_path / 'ok.py'}")
    assert session.ns["before"] == 1
    assert "after" not in session.ns
    assert session.error(f"%run {tmp_path / 'bad.py'}")["ename"] == "SystemExit"
    assert session.ns["x"] == 1
    session.ok(f"%run {tmp_path / 'cmds.ipy'}")
    assert session.ns["where"] == os.getcwd()
    assert session.error("%run /no/such/file.py")["evalue"] == "File `/no/such/file.py` not found."


def test_load_sets_the_next_input(session: Session, tmp_path: Path) -> None:
    source = tmp_path / "code.py"
    source.write_text("a = 1\nb = 2\nc = 3\n")
    outcome = session.ok(f"%load {source}")
    assert outcome.payload == [
        {
            "source": "set_next_input",
            "text": f"# %load {source}\na = 1\nb = 2\nc = 3\n",
            "replace": False,
        }
    ]
    text = session.ok(f"%load -r 2-3 {source}").payload[0]["text"]
    assert text.endswith("\nb = 2\nc = 3\n")
    assert session.error(f"%load {tmp_path / 'missing.py'}")["ename"] == "UsageError"


def test_select_lines() -> None:
    text = "".join(f"{i}\n" for i in range(1, 8))
    assert select_lines(text, "2-3 6") == "2\n3\n6\n"
    assert select_lines(text, "5:7,1") == "5\n6\n1\n"
    with pytest.raises(UsageError):
        select_lines(text, "x-y")


def test_writefile(session: Session, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    session.ok(f"%%writefile {target}\nfirst\n")
    session.ok(f"%%writefile {target}\nsecond\n")
    session.ok(f"%%writefile -a {target}\nthird\n")
    assert target.read_text() == "second\nthird\n"
    assert capsys.readouterr().out.splitlines() == [
        f"Writing {target}",
        f"Overwriting {target}",
        f"Appending to {target}",
    ]


# -- history ----------------------------------------------------------------------------------


def test_history(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    session.ok("a = 1")
    session.ok("b = 2\nc = 3")
    session.ok("a + b")
    capsys.readouterr()
    session.ok("%history -n 1-2")
    assert capsys.readouterr().out == "   1: a = 1\n   2:\nb = 2\nc = 3\n"
    session.ok("%history 1 3")
    assert capsys.readouterr().out == "a = 1\na + b\n"
    session.ok("%history -l 2")
    assert capsys.readouterr().out == "%history -n 1-2\n%history 1 3\n"
    session.ok("%history -g a +")
    assert capsys.readouterr().out == "   3: a + b\n   7: %history -g a +\n"
    session.ok("%history -o -p 3")
    assert capsys.readouterr().out == ">>> a + b\n3\n"


def test_parse_ranges() -> None:
    assert list(parse_ranges("")) == [(0, 1, None)]
    assert list(parse_ranges("4 4-6 4:6 4-")) == [(0, 4, 5), (0, 4, 7), (0, 4, 6), (0, 4, None)]
    assert list(parse_ranges("~2/ ~1/3-5")) == [(-2, 1, None), (-1, 3, 6)]
    assert list(parse_ranges("~3/5-~1/2")) == [(-3, 5, None), (-2, 1, None), (-1, 1, 3)]
    with pytest.raises(UsageError):
        list(parse_ranges("abc"))


# -- output -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ipython", [True, False], ids=["IPython installed", "no IPython"])
def test_capture(
    session: Session,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ipython: bool,
) -> None:
    if not ipython:  # as where IPython is not installed: Loom's own CapturedIO
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: None if name == "IPython" else find_spec(name, *a),
        )
    session.ok(
        "%%capture captured\nimport sys\nprint('out text')\nprint('err text', file=sys.stderr)\n"
        "display('shown')\n!echo from shell\n40 + 2"
    )
    assert capsys.readouterr() == ("", "")
    assert session.displays() == []
    captured = session.ns["captured"]
    # IPython's own type where IPython is installed (its repr is what notebooks show).
    kind = "IPython.utils.capture" if ipython else "kernel.server.magics._output_magics"
    assert type(captured).__module__ == kind
    assert type(captured).__name__ == "CapturedIO"
    if not ipython:
        assert isinstance(captured, CapturedIO)
    assert captured.stdout == "out text\nfrom shell\n"
    assert captured.stderr == "err text\n"
    assert [o.data["text/plain"] for o in captured.outputs] == ["'shown'", "42"]
    session.ok("captured.show()")
    assert capsys.readouterr() == ("out text\nfrom shell\n", "err text\n")
    assert [d["data"]["text/plain"] for d in session.displays()] == ["'shown'", "42"]


def test_capture_options_and_errors(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    streams = sys.stdout, sys.stderr
    session.ok("%%capture --no-stdout --no-display\nprint('visible')\ndisplay(1)")
    assert capsys.readouterr().out == "visible\n"
    assert len(session.displays()) == 1
    error = session.error("%%capture c\nprint('partial')\nraise ValueError('v')")
    assert error["ename"] == "ValueError"
    assert "----> 3 raise ValueError('v')" in plain(error["traceback"])
    assert session.ns["c"].stdout == "partial\n"
    assert (sys.stdout, sys.stderr) == streams


def test_matplotlib_says_which_backends_exist_and_what_is_missing(
    session: Session, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert session.error("%matplotlib qt")["evalue"] == (
        "%matplotlib qt: Loom's kernel provides 'inline', 'notebook', 'widget'"
        " (it runs no GUI event loop)"
    )
    session.ok("%matplotlib --list")
    assert capsys.readouterr().out == (
        "Available matplotlib backends: ['inline', 'notebook', 'widget']\n"
    )
    import importlib.util

    find_spec = importlib.util.find_spec
    absent = {"matplotlib"}
    monkeypatch.setattr(
        "importlib.util.find_spec",
        lambda name, *args: None if name in absent else find_spec(name, *args),
    )
    error = session.error("%matplotlib inline")
    assert error["evalue"] == (
        "%matplotlib inline needs matplotlib, not installed in the kernel's environment;"
        " %pip install matplotlib"
    )
    absent = {"ipykernel"}
    assert session.error("%matplotlib notebook")["evalue"] == (
        "%matplotlib notebook needs ipykernel, not installed in the kernel's environment"
        " (matplotlib's nbagg backend imports IPython.display and ipykernel.comm);"
        " %pip install ipykernel"
    )
    absent = {"ipympl"}
    assert session.error("%matplotlib widget")["evalue"] == (
        "%matplotlib widget needs ipympl, not installed in the kernel's environment"
        " (ipympl's figures are ipywidgets); %pip install ipympl"
    )


def test_matplotlib_inline_shows_figures_as_png(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    session.ok("%matplotlib inline")
    session.ok("import matplotlib\nmatplotlib.get_backend()")
    assert session.results() == ["'module://kernel.server.interpreter._mpl_inline'"]
    assert "MPLBACKEND" not in os.environ  # child processes are not told about it
    session.ok("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]);")
    [figure] = session.displays()
    assert set(figure["data"]) == {"image/png", "text/plain"}
    assert figure["data"]["text/plain"].startswith("<Figure size")
    session.ok("plt.figure()\nplt.plot([1]);\nplt.show()\nplt.get_fignums()")
    assert len(session.displays()) == 1
    assert session.results() == ["[]"]


# -- argument helpers -------------------------------------------------------------------------


def test_split_options() -> None:
    assert split_options("-n 5 -r3 -qo x + 1", "n:r:qo") == (
        {"n": "5", "r": "3", "q": True, "o": True},
        "x + 1",
    )
    assert split_options("-1 + x", "n:") == ({}, "-1 + x")
    assert split_options("--out=a --err b rest  of it", "", ["out=", "err="]) == (
        {"out": "a", "err": "b"},
        "rest  of it",
    )
    assert split_options("-n 1 -- -n", "n:") == ({"n": "1"}, "-n")
    with pytest.raises(UsageError):
        split_options("-n", "n:")


def test_expand_vars() -> None:
    ns = {"x": 2, "name": "loom", "d": {"k": "v"}}
    assert expand_vars("{x * 3} $name ${x}", ns) == "6 loom $2"
    assert expand_vars("{d['k']} {{literal}}", ns) == "v {literal}"
    assert expand_vars("echo '$name' $$name", ns) == "echo '$name' $name"
    assert expand_vars("awk '{print $1}'", ns) == "awk '{print $1}'"
    assert expand_vars("$HOME {x}", ns) == "$HOME {x}"  # one failure: nothing expands
    assert expand_vars("{y}", ns, {"y": "local"}) == "local"


def test_matplotlib_without_a_backend_says_which_it_uses(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    # As IPython: a bare %matplotlib chooses the default and names it; a named one is silent.
    pytest.importorskip("matplotlib")
    session.ok("%matplotlib")
    assert capsys.readouterr().out == (
        "Using matplotlib backend: module://kernel.server.interpreter._mpl_inline\n"
    )
    session.ok("%matplotlib inline")
    assert capsys.readouterr().out == ""
