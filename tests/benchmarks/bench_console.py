"""``loom`` against ``jupyter console``, each in a pseudo-terminal, side by side in one run.

Both consoles start the *same* kind of kernel (by kernelspec name): first ``python3``
(ipykernel) for both, then ``loom`` (Loom's kernel) for both, each in a table of its
own, so the ratio compares the consoles and not the kernels. They run as
``python -m shell --kernel K`` and ``python -m jupyter_console --kernel K``, under
pexpect in a 40x120 pty with ``TERM=xterm-256color``:

- **start -> prompt visible** (``start_s``): spawn until ``In [1]:`` has been written,
  kernel start included; then ``1+1`` and Enter are typed at once and **start -> first
  result** is the time until ``Out[1]:`` appears (shown, no target). A fresh console
  (and kernel) per trial, trials interleaved (the order alternates each round), after
  one discarded warm-up round that fills the page cache and the bytecode cache.
- **Enter on ``pass`` -> next prompt** (``enter_pass_ms``): ``pass`` and Enter typed
  at a warm prompt until the next prompt, with the exact next number, is written.
- **20k lines -> prompt**: the time from typing the line until the next prompt is
  written after the last of 20,000 printed lines, as a print loop
  (``for i in range(20000): print(i)``, ``lines_20k_s``; both consoles run a one-line
  ``for`` at the first Enter, no blank line needed) and as a single print
  (``print("\\n".join(...))``, ``lines_20k_join_s``). Every line is checked to have
  been shown, in order.

The last two run on one long-lived console of each kind, both up at once and measured
in alternating blocks, so a change in the machine's background load cannot favour one
of them. A timed wait ends when the awaited text has been *read* from the pty: output is
read continuously (the console never blocks on a full pty), and escape sequences
between the characters of a prompt are allowed for. Like a real terminal, the benchmark
answers the consoles' cursor position requests (``ESC [6n``; prompt_toolkit otherwise
waits for a reply, then warns), always with the bottom row: a console in use has its
prompt at the bottom of the screen.

**The kernel alone** (no target; the floor no console can go below): after the consoles
are gone, a fresh kernel of the same kind runs the same cells for Loom's client
(``kernel.start_kernel``), which discards the output; each figure is shown with its
ratio to jupyter console's. Where that ratio is already above a target, the target
cannot be met with that kernel by any front end, and the table says so.

jupyter console shows its first prompt once its ``kernel_info_request`` is answered,
without waiting for its iopub subscription to arrive: a cell typed at once can then run
before the kernel publishes to it, and jupyter console waits for that cell's ``status:
idle`` forever. With Loom's kernel, which answers soon after binding its sockets, this
happens to a sizeable share of starts; the benchmark then counts the start as hung,
reports the count and starts that console again (a hang of Loom's own console is an
error).

Isolation: the consoles get a temporary ``JUPYTER_CONFIG_DIR``, ``JUPYTER_DATA_DIR``,
``JUPYTER_RUNTIME_DIR``, ``IPYTHONDIR``, ``LOOM_HISTORY_FILE`` and
``LOOM_CONSOLE_HISTORY``; Loom's kernelspec is written to a temporary ``JUPYTER_PATH``
entry so that both consoles find the same ``loom`` spec. ``PYTHONPYCACHEPREFIX`` points
into the run's temporary directory (see ``bench_kernel.py``). Every console is killed by
PID at the end of its trial together with the processes it started (its kernel runs in a
session of its own, so it is found among the console's descendants in ``/proc``); this
process is made a child subreaper so that nothing it started can escape, and it checks
that every one of them is gone.

Prints a table per kernel kind (medians, ratio loom/jupyter console, target, ``MISSED``
where a target is missed) and a final ``BENCH_JSON {...}`` line. The exit code is 0
whether targets are met or not; it is non-zero only when the benchmark could not measure
(a console crashed, hung or showed wrong output). If only ``jupyter console`` fails with
Loom's kernel, that table is replaced by the reason and the exit code stays 0. Linux only
(``/proc``, ``pidfd_open``, ``prctl``).

Run: ``python tests/benchmarks/bench_console.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pexpect

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _bench_common, from any cwd
import _bench_common as bench  # it also puts the repository on sys.path

from kernel import install_kernelspec, start_kernel
from kernel.protocol import Message

CONSOLES: dict[str, Callable[[str], list[str]]] = {
    "loom": lambda k: [sys.executable, "-m", "shell", "--kernel", k],
    "jupyter_console": lambda k: [sys.executable, "-m", "jupyter_console", "--kernel", k],
}
KINDS = ("python3", "loom")  # kernelspecs; the first is the headline table
ROWS, COLS = 40, 120
LINES = 20_000
FLOODS = {  # metric key -> the line typed
    "lines_20k_s": f"for i in range({LINES}): print(i)",
    "lines_20k_join_s": f'print("\\n".join(map(str, range({LINES}))))',
}
PASS_BLOCK = 20  # Enter presses per console before switching to the other
START_TIMEOUT_S = 90.0
PROMPT_TIMEOUT_S = 30.0
FLOOD_TIMEOUT_S = 180.0
GONE_TIMEOUT_S = 10.0
FIRST_RESULT_TIMEOUT_S = 15.0  # then the first cell counts as hung (FirstCellHung)
MAX_HANGS = 10  # per console and kernel kind, before giving up

# An escape sequence: CSI (colours, cursor moves, modes), OSC (titles) or a short one.
_ESC = rb"\x1b(?:\[[0-9;?<=>]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78])"
ANSI = re.compile(_ESC)
_E = rb"(?:" + _ESC + rb")*"
CPR_REQUEST = re.compile(rb"\x1b\[6n")
CPR_REPLY = f"\x1b[{ROWS};1R".encode()
CPR_WARNING = b"cursor position requests (CPR)"  # prompt_toolkit gave up waiting for a reply
NOTES: list[str] = []  # oddities of the run that do not invalidate it, printed at the end
LAST_LINE = re.compile(rb"\n" + _E + str(LINES - 1).encode() + _E + rb"\r?\n")


def prompt_re(word: str, number: int) -> re.Pattern[bytes]:
    """``In [3]:`` / ``Out[3]:`` as written to a terminal: escapes allowed in between."""
    parts = (word.encode(), rb" ?", rb"\[", str(number).encode(), rb"\]:")
    return re.compile(_E.join(parts))


@dataclass(frozen=True)
class Settings:
    startup_trials: int
    pass_warmup: int
    pass_iterations: int
    flood_trials: int


QUICK = Settings(1, 5, 20, 1)  # --quick: a smoke run (each start still has a warm-up)
FULL = Settings(7, 10, 100, 5)


@dataclass
class Samples:
    """Raw samples of one console with one kernel kind, filled in by the phases below."""

    start_s: list[float] = field(default_factory=list)
    first_result_s: list[float] = field(default_factory=list)
    enter_s: list[float] = field(default_factory=list)
    flood_s: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in FLOODS})
    kernel_cmd: str = ""
    starts: int = 0  # consoles started, warm-up and steady-state ones included
    hangs: int = 0  # of which the first cell never showed its result (then restarted)


class BenchError(Exception):
    """A console misbehaved (crashed, hung, wrong output): the measurement is meaningless."""

    def __init__(self, console: str, message: str) -> None:
        super().__init__(f"{console}: {message}")
        self.console = console


class FirstCellHung(BenchError):
    """The first prompt showed, but the first cell (typed at once) never showed its result.

    jupyter console waits only for the ``kernel_info_reply`` on shell before its first
    prompt, not for its iopub subscription: a cell typed at once can run before the
    subscription reaches the kernel, and its ``status: idle`` is then never seen.
    Such starts are counted, reported and repeated (for jupyter console only).
    """


# -- processes ---------------------------------------------------------------------------


def wait_gone(pids: list[int], what: str) -> None:
    """Wait until every one of ``pids`` has exited (reaping those that are ours)."""
    survivors = bench.wait_gone(pids, GONE_TIMEOUT_S)
    if survivors:
        raise BenchError(what, f"process {survivors[0]} survived SIGKILL")


def kill_leftovers() -> list[int]:
    """Last safety net: SIGKILL and reap whatever we started that is still alive."""
    left = bench.descendants(os.getpid())
    for pid in left:
        bench.sigkill_group(pid)
    with contextlib.suppress(BenchError):
        wait_gone(left, "leftover")
    return left


def _cmdline(pid: int) -> str:
    """A process's command line, with long paths shortened to their last part."""
    with contextlib.suppress(OSError):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        return " ".join(Path(a).name if a.startswith("/") else a for a in argv if a)
    return "?"


# -- one console in a pty ----------------------------------------------------------------


class Console:
    """One console process in a pseudo-terminal that answers cursor position requests."""

    def __init__(self, name: str, kind: str, workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.kind = kind
        self.count = 0  # the number of the prompt last seen
        argv = CONSOLES[name](kind)
        self.spawned_at = time.perf_counter()
        self.child = pexpect.spawn(
            argv[0],
            argv[1:],
            cwd=str(workdir),
            env=env,
            dimensions=(ROWS, COLS),
            maxread=1 << 16,
            searchwindowsize=None,
        )
        self.child.delaybeforesend = None  # pexpect sleeps 50 ms before each send otherwise
        self.child.delayafterclose = 0  # close() follows wait(): nothing to wait for

    def __str__(self) -> str:
        return f"{self.name} (kernel {self.kind})"

    def send(self, text: str) -> None:
        self.child.send(text.encode())

    def read_until(self, pattern: re.Pattern[bytes], timeout: float, what: str) -> bytes:
        """Read output until ``pattern`` (described by ``what``) has been read; return all
        of it, the match included.

        Cursor position requests met on the way are answered. Raises :class:`BenchError`
        if the console exits or ``timeout`` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        parts: list[bytes] = []
        while True:
            try:
                index = self.child.expect_list(
                    [CPR_REQUEST, pattern], timeout=max(0.0, deadline - time.monotonic())
                )
            except pexpect.TIMEOUT:
                tail = self.child.buffer[-400:]
                raise BenchError(
                    str(self), f"no {what} within {timeout:g} s; last output: {tail!r}"
                ) from None
            except pexpect.EOF:
                tail = (b"".join(parts) + self.child.before)[-400:]
                raise BenchError(str(self), f"exited; last output: {tail!r}") from None
            parts += (self.child.before, self.child.after)
            if CPR_WARNING in self.child.before:  # harmless but unlike a real terminal: say so
                NOTES.append(f"{self}: a cursor position request was not answered in time")
            if index == 1:
                return b"".join(parts)
            self.child.send(CPR_REPLY)

    def read_prompt(self, word: str, number: int, timeout: float = PROMPT_TIMEOUT_S) -> bytes:
        """Read output until the prompt ``In [number]:`` (or ``Out[number]:``) is visible."""
        return self.read_until(prompt_re(word, number), timeout, f"{word}[{number}]:")

    def run_cell(self, code: str) -> bytes:
        """Type ``code`` and Enter; return the output up to the next prompt."""
        self.send(code + "\r")
        out = self.read_prompt("In", self.count + 1)
        self.count += 1
        return out

    def kill(self) -> None:
        """SIGKILL the console and everything it started; check that all of it is gone."""
        tree = bench.descendants(self.child.pid)
        for pid in [*tree, self.child.pid]:
            bench.sigkill_group(pid)
        self.child.wait()  # reaps the console; its unreaped children are then ours
        self.child.close(force=True)
        wait_gone(tree, str(self))


@contextlib.contextmanager
def open_console(name: str, kind: str, workdir: Path, env: dict[str, str]) -> Iterator[Console]:
    console = Console(name, kind, workdir, env)
    try:
        yield console
    finally:
        console.kill()


# -- measurements ------------------------------------------------------------------------


def wait_first_prompt(c: Console) -> float:
    """Seconds from spawn until ``In [1]:`` is visible."""
    c.read_prompt("In", 1, START_TIMEOUT_S)
    c.count = 1
    return time.perf_counter() - c.spawned_at


def first_cell(c: Console) -> float:
    """Type ``1+1`` and Enter at once; seconds from spawn until ``Out[1]:`` is visible.

    Raises :class:`FirstCellHung` if the result never shows although the console lives.
    """
    c.send("1+1\r")
    try:
        c.read_prompt("Out", 1, FIRST_RESULT_TIMEOUT_S)
    except BenchError as exc:
        if c.child.isalive():
            raise FirstCellHung(str(c), str(exc).split(": ", 1)[1]) from None
        raise
    result_s = time.perf_counter() - c.spawned_at
    shown = ANSI.sub(b"", c.read_prompt("In", 2))
    if not re.match(rb"\s*2\s", shown):
        raise BenchError(str(c), f"1+1 showed {shown[:80]!r}")
    c.count = 2
    return result_s


@contextlib.contextmanager
def started_console(
    name: str, kind: str, workdir: Path, env: dict[str, str], out: Samples
) -> Iterator[tuple[Console, float, float]]:
    """A fresh console through its first cell: ``(console, start_s, first_result_s)``.

    If *jupyter console*'s first cell hangs, the start is counted in ``out.hangs`` and
    repeated with a fresh console (see :class:`FirstCellHung`); a hang of Loom's is an error.
    """
    while True:
        out.starts += 1
        with open_console(name, kind, workdir, env) as c:
            start_s = wait_first_prompt(c)
            try:
                result_s = first_cell(c)
            except FirstCellHung:
                if name == "loom" or out.hangs >= MAX_HANGS:
                    raise
                out.hangs += 1
                continue
            yield c, start_s, result_s
            return


def startup_trial(
    name: str, kind: str, workdir: Path, env: dict[str, str], out: Samples, record: bool
) -> None:
    """A fresh console: spawn -> ``In [1]:``, then ``1+1`` typed at once -> ``Out[1]:``."""
    with started_console(name, kind, workdir, env, out) as (c, start_s, result_s):
        if record:
            out.start_s.append(start_s)
            out.first_result_s.append(result_s)
            if not out.kernel_cmd:
                out.kernel_cmd = "; ".join(_cmdline(p) for p in bench.descendants(c.child.pid))


def enter_passes(c: Console, count: int, out: list[float] | None) -> None:
    """``count`` times: type ``pass`` and Enter, time until the next prompt is visible."""
    for _ in range(count):
        t0 = time.perf_counter()
        c.run_cell("pass")
        elapsed = time.perf_counter() - t0
        if out is not None:
            out.append(elapsed)


def flood(c: Console, key: str, out: Samples, problems: list[str]) -> None:
    """Print ``LINES`` lines; time until the prompt after the last one is visible."""
    t0 = time.perf_counter()
    c.send(FLOODS[key] + "\r")
    shown = c.read_until(LAST_LINE, FLOOD_TIMEOUT_S, f"the line {LINES - 1}")
    shown += c.read_prompt("In", c.count + 1)
    elapsed = time.perf_counter() - t0
    c.count += 1
    # As a terminal shows them: a carriage return starts the line over (the console's
    # status line is drawn, then erased with "\r\x1b[K" before the output that follows).
    rows = (row.rstrip(b"\r").rsplit(b"\r", 1)[-1] for row in shown.split(b"\n"))
    lines = [ANSI.sub(b"", row).strip() for row in rows]
    numbers = [line for line in lines if line.isdigit()]
    if numbers != [str(i).encode() for i in range(LINES)]:
        problems.append(f"{key}: {len(numbers)} of {LINES} lines shown (or out of order)")
    out.flood_s[key].append(elapsed)


def steady_state(
    kind: str, s: Settings, workdir: Path, env: dict[str, str], samples: dict[str, Samples]
) -> list[str]:
    """Long-lived consoles of both kinds, measured in alternating blocks; the problems."""
    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        consoles: list[Console] = []
        for name in CONSOLES:  # one after the other: a console's start-up output is read,
            # so its cursor position request is answered in time
            start = started_console(name, kind, workdir, env, samples[name])
            consoles.append(stack.enter_context(start)[0])
        for c in consoles:
            enter_passes(c, s.pass_warmup, None)
        blocks = max(1, s.pass_iterations // PASS_BLOCK)
        for c in bench.alternating(consoles, blocks):
            enter_passes(c, s.pass_iterations // blocks, samples[c.name].enter_s)
        for c in bench.alternating(consoles, s.flood_trials):
            for key in FLOODS:
                found: list[str] = []
                flood(c, key, samples[c.name], found)
                problems += [f"{c}: {p}" for p in found]
    return problems


def kernel_alone(kind: str, s: Settings, env: dict[str, str]) -> Samples:
    """The steady-state cells on a fresh kernel of ``kind``, for a client that
    discards the output: what the kernel itself takes (see the module doc)."""
    floor = Samples()

    async def measure() -> None:
        lines = 0

        def count(message: Message) -> None:
            nonlocal lines
            lines += str(message.content.get("text", "")).count("\n")

        async with start_kernel(kind) as (_, client):
            for i in range(s.pass_warmup + s.pass_iterations):
                t0 = time.perf_counter()
                await client.execute("pass")
                if i >= s.pass_warmup:
                    floor.enter_s.append(time.perf_counter() - t0)
            for _ in range(s.flood_trials):
                for key, code in FLOODS.items():
                    lines = 0
                    t0 = time.perf_counter()
                    await client.execute(code, on_output=count)
                    floor.flood_s[key].append(time.perf_counter() - t0)
                    if lines != LINES:
                        raise BenchError("the kernel alone", f"{key}: {lines} of {LINES} lines")

    # The consoles' environment (it holds the 'loom' spec's JUPYTER_PATH) for the kernel.
    with mock.patch.dict(os.environ, env, clear=True):
        asyncio.run(measure())
    return floor


def run_kind(
    kind: str, s: Settings, workdir: Path, env: dict[str, str]
) -> tuple[dict[str, Samples], list[str]]:
    samples = {name: Samples() for name in CONSOLES}
    for name, record in bench.startup_rounds(list(CONSOLES), s.startup_trials):
        startup_trial(name, kind, workdir, env, samples[name], record=record)
    problems = steady_state(kind, s, workdir, env, samples)
    samples[ALONE] = kernel_alone(kind, s, env)
    return samples, problems


# -- report ------------------------------------------------------------------------------


METRICS: tuple[bench.Metric[Samples], ...] = (  # targets on the ratio loom/jupyter console
    bench.Metric("start_s", "start -> prompt visible", "s", 1, 0.4, lambda x: x.start_s),
    bench.Metric("first_result_s", "start -> first result (1+1)", "s", 1, None,
                 lambda x: x.first_result_s),
    bench.Metric("enter_pass_ms", "Enter on 'pass' -> next prompt", "ms", 1e3, 0.15,
                 lambda x: x.enter_s),
    bench.Metric("lines_20k_s", "20k lines (print loop) -> prompt", "s", 1, 0.5,
                 lambda x: x.flood_s["lines_20k_s"]),
    bench.Metric("lines_20k_join_s", "20k lines (one print) -> prompt", "s", 1, 0.5,
                 lambda x: x.flood_s["lines_20k_join_s"]),
)  # fmt: skip


ALONE = "kernel_alone"  # the samples key of :func:`kernel_alone`'s figures
ALONE_METRICS = tuple(m for m in METRICS if m.key in ("enter_pass_ms", *FLOODS))


def alone_summary(samples: dict[str, Samples]) -> dict[str, dict[str, Any]]:
    """The kernel-alone figures, each against jupyter console's (its ``loom`` field
    holds the kernel's figure)."""
    return bench.summarize(ALONE_METRICS, {**samples, "loom": samples[ALONE]}, "jupyter_console")


def report_lines(
    kind: str, summary: dict[str, dict[str, Any]], alone: dict[str, dict[str, Any]]
) -> Iterator[str]:
    """The table of one kernel kind, under a line that names it, then the kernel alone."""
    yield f"kernel {kind!r} in both consoles (ratio = loom / jupyter console):"
    yield from bench.table_lines(
        METRICS, summary, "jupyter_console", "jupyter", bench.Columns(4, 10, 5)
    )
    yield "  the kernel alone, output discarded (ratio = kernel / jupyter console):"
    for m in ALONE_METRICS:
        row = alone[m.key]
        value = bench.fmt_value(row["loom"])
        line = f"    {m.label:<34} {value:>10} {m.unit:<3} {row['ratio']:.3f}x"
        if m.target is not None and row["ratio"] > m.target:
            line += f"  above the {m.target}x target: no front end can meet it on this kernel"
        yield line


def console_env(workdir: Path) -> dict[str, str]:
    """The consoles' environment: config, data, runtime and history all in ``workdir``.

    Based on :func:`_bench_common.child_env`: Loom importable, ``PYTHONPYCACHEPREFIX``
    set for a fair startup (see ``bench_kernel.py``).
    """
    env = bench.child_env(workdir)
    for name in ("COLUMNS", "LINES", "NO_COLOR", "LOOM_EDITING_MODE", "LOOM_PAGER"):
        env.pop(name, None)
    for name in ("JUPYTER_PATH", "JUPYTER_PREFER_ENV_PATH"):
        env.pop(name, None)
    env["TERM"] = "xterm-256color"
    spec_prefix = workdir / "prefix"
    install_kernelspec(prefix=str(spec_prefix))  # one 'loom' spec for both consoles
    env["JUPYTER_PATH"] = str(spec_prefix / "share" / "jupyter")
    for name, sub in (
        ("JUPYTER_CONFIG_DIR", "jupyter-config"),
        ("JUPYTER_DATA_DIR", "jupyter-data"),
        ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"),
        ("IPYTHONDIR", "ipython"),
        ("LOOM_HISTORY_FILE", "loom-kernel-history.sqlite"),
        ("LOOM_CONSOLE_HISTORY", "loom-console-history"),
    ):
        env[name] = str(workdir / sub)
    return env


def main() -> int:
    quick, settings = bench.start_run("bench_console", __doc__, QUICK, FULL)
    bench.become_subreaper()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    floors: dict[str, dict[str, dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    problems: dict[str, list[str]] = {}
    hangs: dict[str, dict[str, dict[str, int]]] = {}
    status = 0
    with tempfile.TemporaryDirectory(prefix="loom-bench-") as tmp:
        workdir = Path(tmp)
        env = console_env(workdir)
        for kind in KINDS:
            try:
                samples, problems[kind] = run_kind(kind, settings, workdir, env)
            except Exception as exc:  # could not measure (crash, hang, wrong output): say why
                traceback.print_exc()
                cause = bench.unwrap(exc)
                errors[kind] = f"{type(cause).__name__}: {cause}"
                print(f"bench_console: kernel {kind!r}: FAILED: {errors[kind]}", flush=True)
                # Only jupyter console failing on a kernel other than the headline one is
                # "not available"; anything else means the benchmark could not measure.
                peer_only = isinstance(cause, BenchError) and cause.console.startswith("jupyter")
                if kind == KINDS[0] or not peer_only:
                    status = 1
                continue
            finally:
                left = kill_leftovers()
                if left:
                    print(f"bench_console: killed leftover processes {left}", flush=True)
            results[kind] = bench.summarize(METRICS, samples, "jupyter_console")
            floors[kind] = alone_summary(samples)
            for line in report_lines(kind, results[kind], floors[kind]):
                print(line)
            consoles = {name: samples[name] for name in CONSOLES}
            for name, s in consoles.items():
                print(f"  {name} started: {s.kernel_cmd}")
            hangs[kind] = {n: {"hangs": s.hangs, "starts": s.starts} for n, s in consoles.items()}
            for name, s in consoles.items():
                if s.hangs:
                    print(
                        f"  {name}: the first cell, typed as soon as In [1]: showed, hung in "
                        f"{s.hangs} of {s.starts} starts (those starts were repeated)"
                    )
            for problem in problems[kind]:
                print(f"  LOST OUTPUT: {problem}")
            print(flush=True)
    for note in NOTES:
        print(f"note: {note}")
    report = {
        "benchmark": "console",
        "quick": quick,
        "kernel": KINDS[0],
        "metrics": results.get(KINDS[0], {}),
        "by_kernel": results,
        "kernel_alone": floors,
        "errors": errors,
        "output_complete": {k: not v for k, v in problems.items()},
        "first_cell_hangs": hangs,
    }
    bench.print_bench_json(report)
    return status


if __name__ == "__main__":
    sys.exit(main())
