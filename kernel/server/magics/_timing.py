"""``%time``, ``%%time``, ``%timeit`` and ``%%timeit``, with IPython's output format."""

from __future__ import annotations

import ast
import gc
import itertools
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kernel.server.interpreter._compile import compile_body, parse_body

from ._args import UsageError, split_options

if TYPE_CHECKING:
    from ._registry import CallSite, Magics

__all__ = ["TimeitResult", "format_time", "load_timing_magics"]

#: %timeit picks the loop count that makes one run last at least this long (as IPython).
MIN_RUN_TIME = 0.2
DEFAULT_REPEAT = 7
#: %time reports the compile time when it exceeds this many seconds.
_REPORT_COMPILE_TIME = 0.1

_TIMEIT_OPTIONS = "n:r:p:tcqo"
_TIMEIT_TEMPLATE = """\
def inner(_it, _timer):
    pass
    _t0 = _timer()
    for _i in _it:
        pass
    _t1 = _timer()
    return _t1 - _t0
"""

Inner = Callable[[Iterator[None], Callable[[], float]], float]


def load_timing_magics(magics: Magics) -> None:
    """Register ``%time``, ``%%time``, ``%timeit`` and ``%%timeit`` on ``magics``."""
    timing = _TimingMagics(magics)
    magics.register_line("time", timing.time, expand=False)
    magics.register_cell("time", timing.time_cell, expand=False)
    magics.register_line("timeit", timing.timeit, expand=False)
    magics.register_cell("timeit", timing.timeit_cell, expand=False)


def format_time(seconds: float, precision: int = 3) -> str:
    """A duration as IPython prints it: ``1.23 μs``, ``45.6 ms``, ``2.5 s``, ``1min 5s``."""
    if seconds >= 60.0:
        parts = []
        left = seconds
        for suffix, length in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
            value = int(left / length)
            if value > 0:
                left %= length
                parts.append(f"{value}{suffix}")
            if left < 1:
                break
        return " ".join(parts)
    units = ["s", "ms", _micro(), "ns"]
    order = min(-int(math.floor(math.log10(seconds)) // 3), 3) if seconds > 0.0 else 3
    return "%.*g %s" % (precision, seconds * 10 ** (3 * order), units[order])  # noqa: UP031


def _micro() -> str:
    """``μs`` (the Greek letter mu, U+03BC, as IPython writes it; not the micro sign
    U+00B5) if stdout can encode it, else ``us``."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "\u03bc".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "us"
    return "\u03bcs"


class TimeitResult:
    """What ``%timeit -o`` returns: ``loops`` per run, and each run's total in ``all_runs``.

    ``timings`` are per-loop times; ``average``/``stdev``/``best``/``worst`` are over them.
    """

    def __init__(
        self, loops: int, repeat: int, all_runs: list[float], compile_time: float, precision: int
    ) -> None:
        self.loops = loops
        self.repeat = repeat
        self.all_runs = all_runs
        self.compile_time = compile_time
        self.timings = [run / loops for run in all_runs]
        self.best = min(self.timings)
        self.worst = max(self.timings)
        self._precision = precision

    @property
    def average(self) -> float:
        return math.fsum(self.timings) / len(self.timings)

    @property
    def stdev(self) -> float:
        mean = self.average
        variance = math.fsum((t - mean) ** 2 for t in self.timings) / len(self.timings)
        return math.sqrt(variance)

    def __str__(self) -> str:
        runs, loops = len(self.timings), self.loops
        return (
            f"{format_time(self.average, self._precision)} \u00b1 "
            f"{format_time(self.stdev, self._precision)} per loop (mean \u00b1 std. dev. of "
            f"{runs} run{'s' if runs != 1 else ''}, {loops:,} loop{'s' if loops != 1 else ''}"
            " each)"
        )

    def __repr__(self) -> str:
        return f"<TimeitResult : {self}>"


class _TimingMagics:
    def __init__(self, magics: Magics) -> None:
        self._magics = magics

    def time(self, line: str) -> object:
        """Time the execution of a Python statement or expression.

        Usage: ``%time statement`` or, as the first line of a cell, ``%%time`` (times the
        whole cell). Prints the CPU (user, system) and wall-clock times; the value of an
        expression (the cell's last expression for ``%%time``) is returned, so it is shown
        as the cell's result.
        """
        site = self._magics.call_site
        return self._time(line, site, site.lineno)

    def time_cell(self, line: str, body: str) -> object:
        """Time the execution of the whole cell; see ``%time?``."""
        if line.strip():
            raise UsageError("Can't use statement directly after '%%time'!")
        site = self._magics.call_site
        return self._time(body, site, site.lineno + 1)

    def _time(self, source: str, site: CallSite, first_line: int) -> object:
        started = time.perf_counter()
        code = compile_body(source, site.filename, first_line, want_value=True)
        compile_time = time.perf_counter() - started
        cpu_before = os.times()
        wall_before = time.perf_counter()
        value = code.run(site.globals, site.locals)
        wall = time.perf_counter() - wall_before
        cpu_after = os.times()
        user = cpu_after.user - cpu_before.user
        system = cpu_after.system - cpu_before.system
        print(
            f"CPU times: user {format_time(user)}, sys: {format_time(system)},"
            f" total: {format_time(user + system)}"
        )
        print(f"Wall time: {format_time(wall)}")
        if compile_time > _REPORT_COMPILE_TIME:
            print(f"Compiler : {format_time(compile_time)}")
        return value

    def timeit(self, line: str) -> TimeitResult | None:
        """Time a Python statement by running it many times.

        Usage, as a line magic: ``%timeit [-n N -r R -p P -t -c -q -o] statement``
        and as a cell magic: ``%%timeit [-n N -r R -p P -t -c -q -o] setup_statement``
        (the rest of the cell is the statement timed; the setup runs before each run).

        Options, as IPython's:
          -n N  loops per run; by default the smallest power of 10 making a run last 0.2 s
                (that calibration run is not one of the runs)
          -r R  number of runs (default 7)
          -p P  significant digits in the output (default 3)
          -t    time with ``time.time`` (wall clock) instead of ``time.perf_counter``
          -c    time with ``time.process_time`` (CPU time of this process)
          -q    quiet: print nothing
          -o    return a TimeitResult (loops, all_runs, timings, average, stdev, best, worst)

        Prints, like IPython: ``1.23 μs ± 45.6 ns per loop (mean ± std. dev. of 7 runs,
        1,000,000 loops each)``.
        """
        options, stmt = split_options(line, _TIMEIT_OPTIONS)
        site = self._magics.call_site
        return self._timeit(options, stmt, "pass", site, site.lineno, site.lineno)

    def timeit_cell(self, line: str, body: str) -> TimeitResult | None:
        """Time the cell's statements; the ``%%timeit`` line holds options and setup code.

        See ``%timeit?``.
        """
        options, setup = split_options(line, _TIMEIT_OPTIONS)
        site = self._magics.call_site
        return self._timeit(options, body, setup or "pass", site, site.lineno + 1, site.lineno)

    def _timeit(
        self,
        options: dict[str, str | bool],
        stmt: str,
        setup: str,
        site: CallSite,
        stmt_line: int,
        setup_line: int,
    ) -> TimeitResult | None:
        number = _int_option(options, "n")
        repeat = _int_option(options, "r")
        precision = _int_option(options, "p") or 3
        if not stmt.strip():
            return None
        started = time.perf_counter()
        inner = _make_inner(stmt, setup, site, stmt_line, setup_line)
        compile_time = time.perf_counter() - started
        timer = time.process_time if options.get("c") else time.perf_counter
        timer = time.time if options.get("t") else timer
        loops, runs = _measure(inner, number, repeat or DEFAULT_REPEAT, timer)
        result = TimeitResult(loops, len(runs), runs, compile_time, precision)
        if not options.get("q"):
            if result.worst > 4 * result.best and result.best > 0 and result.worst > 1e-6:
                print(
                    f"The slowest run took {result.worst / result.best:0.2f} times longer than"
                    " the fastest. This could mean that an intermediate result is being cached."
                )
            print(result)
            if compile_time > _REPORT_COMPILE_TIME:
                print(f"Compiler time: {compile_time:.2f} s")
        return result if options.get("o") else None


def _int_option(options: dict[str, str | bool], name: str) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise UsageError(f"option -{name} needs a positive integer, not {value!r}") from None
    if number < 1:
        raise UsageError(f"option -{name} needs a positive integer, not {value!r}")
    return number


def _make_inner(stmt: str, setup: str, site: CallSite, stmt_line: int, setup_line: int) -> Inner:
    """The timing function: ``inner(iterator, timer)`` runs ``stmt`` once per item.

    The statement and the setup are spliced into the template as syntax trees, keeping their
    own line numbers, so errors point at the user's lines and multi-line strings stay intact.
    """
    template = ast.parse(_TIMEIT_TEMPLATE)
    function = template.body[0]
    assert isinstance(function, ast.FunctionDef)
    loop = function.body[2]
    assert isinstance(loop, ast.For)
    function.body[0:1] = parse_body(setup, site.filename, setup_line).body or [ast.Pass()]
    loop.body = parse_body(stmt, site.filename, stmt_line).body or [ast.Pass()]
    ast.fix_missing_locations(template)
    code = compile(template, site.filename, "exec", dont_inherit=True)
    # A function cannot see its caller's locals: give it globals that include them.
    namespace = site.globals if site.locals is None else {**site.globals, **site.locals}
    scope: dict[str, Any] = {}
    exec(code, namespace, scope)
    inner: Inner = scope["inner"]
    return inner


def _measure(
    inner: Inner, number: int | None, repeat: int, timer: Callable[[], float]
) -> tuple[int, list[float]]:
    """``(loops, run times)``: ``repeat`` runs of ``number`` loops. Without ``number``, the
    loop count is IPython's: the smallest power of ten making one run last ``MIN_RUN_TIME``
    (the calibration runs are not counted)."""
    if number is None:
        for exponent in range(10):
            number = 10**exponent
            if _run(inner, number, timer) >= MIN_RUN_TIME:
                break
    assert number is not None
    return number, [_run(inner, number, timer) for _ in range(repeat)]


def _run(inner: Inner, number: int, timer: Callable[[], float]) -> float:
    """One run of ``number`` loops with the garbage collector off, as :mod:`timeit` does."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return inner(itertools.repeat(None, number), timer)
    finally:
        if gc_was_enabled:
            gc.enable()
