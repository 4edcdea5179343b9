"""``%px`` with 4 engines: Loom (kernel, pool, console) against ipyparallel (ipykernel,
ipyparallel, jupyter console), side by side in one run.

- **``%px a=1`` inside the kernel** (``px_ms``): in a cell of a running kernel, the magic
  called in a loop and each call timed with ``time.perf_counter``: Loom's kernel awaits
  its ``%px`` (``current_loom_magics().line["px"]``, the function ``%px`` runs), ipykernel
  calls ``get_ipython().run_line_magic("px", "a=1")`` on ipyparallel's magics
  (``rc.activate()``). The execute_request around the loop is not counted. Each kernel
  starts its own 4-engine cluster from a cell (``%cluster start -n 4``;
  ``ipp.Cluster(n=4).start_and_connect_sync()``); both kernels are up at once and
  measured in alternating blocks, after warm-up calls.
- **the bare execute** (``execute_ms``, informative): the floor ``%px`` stands on, timed
  the same way right after each block of ``%px`` calls: ``rc[:].execute("a=1",
  block=True)`` on the same 4 engines (Loom: a ``parallel.Client()`` of the kernel's
  cluster; ipyparallel: the ``_rc`` the magics use). ``px_ms`` minus this is what the
  magic adds (parsing, output, a numbered cell on the engines).
- **Enter on ``%px a=1`` -> next prompt** (``enter_px_ms``): ``loom --kernel loom`` and
  ``jupyter console --kernel python3`` in ptys (40x120, ``TERM=xterm-256color``), each
  with its cluster started as above; the line and Enter are typed at a ready prompt and
  the time runs until the next prompt, with the next number, has been read from the pty.
  Alternating blocks. The console process's own CPU time per Enter (``enter_cpu_ms``,
  informative: ``/proc/PID/schedstat``, per block of presses) is shown below it:
  unlike the wall time, it hardly depends on the machine's load.
- **4 engines x 10,000 printed lines -> all on screen, prompt back** (``flood_s``):
  ``%px for i in range(10000): print(i)`` typed, timed until the next prompt is back and
  every engine's last line (``9999``) has been read (four times). The time to the prompt
  alone is shown too (``flood_prompt_s``, no target). jupyter console with ipyparallel
  shows its prompt before the output is all there and never shows the rest (ipyparallel
  streams it after the cell's reply; jupyter console drops what comes after): its
  ``flood_s`` is then its time to the prompt, a lower bound that makes Loom's ratio look
  worse than it is, and a note says how many lines it showed.

Differences from ``bench_console.py``: the consoles run with ``PROMPT_TOOLKIT_NO_CPR=1``
(nobody answers cursor position requests; both consoles use prompt_toolkit, so both are
treated alike). Isolation: temporary Jupyter, IPython and Loom directories; the
``loom`` kernelspec is written to a temporary ``JUPYTER_PATH`` entry. This process is a
child subreaper; at the end every process it started (kernels, consoles, controllers,
engines) is SIGKILLed by PID and checked to be gone.

Prints the table (medians, ratio loom/ipyparallel, target, ``MISSED``) and a final
``BENCH_JSON {...}`` line; exits 0 whether targets are met or not, 1 if it could not
measure. Linux only. Run: ``python tests/benchmarks/bench_px.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _bench_common, from any cwd
import _bench_common as bench  # it also puts the repository on sys.path

from kernel import KernelClient, install_kernelspec, start_kernel

CONTENDERS = ("loom", "ipyparallel")
ENGINES = 4
LINES = 10_000
ROWS, COLS = 40, 120
GONE_TIMEOUT_S = 15.0
CLUSTER_TIMEOUT_S = 120.0
PROMPT_TIMEOUT_S = 60.0
FLOOD_TIMEOUT_S = 300.0

_ESC = rb"\x1b(?:\[[0-9;?<=>]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78])"
ANSI = re.compile(_ESC)
_E = rb"(?:" + _ESC + rb")*"

#: What each kernel runs once: start a 4-engine cluster and turn the magics on.
SETUP = {
    "loom": ["%load_ext parallel", f"%cluster start -n {ENGINES}"],
    "ipyparallel": [
        "import ipyparallel as ipp\n"
        f"_cluster = ipp.Cluster(n={ENGINES})\n"
        "_rc = _cluster.start_and_connect_sync()\n"
        f"_rc.wait_for_engines({ENGINES}, timeout=120)\n"
        "_rc.activate()"
    ],
}
TEARDOWN = {"loom": "%cluster stop", "ipyparallel": "_cluster.stop_cluster_sync()"}
#: One timed call of the magic, inside the kernel (see the module doc).
CALL = {
    "loom": "await _px('a=1')",
    "ipyparallel": "get_ipython().run_line_magic('px', 'a=1')",
}
#: The bare execute ``%px`` stands on, timed the same way (``execute_ms``).
BARE = "_dv.execute('a=1', block=True)"
PREPARE = {
    "loom": "from parallel.magics._px_loom import current_loom_magics\n"
    "_px = current_loom_magics().line['px']\n"
    "import parallel as _parallel\n"
    "_dv = _parallel.Client()[:]",
    "ipyparallel": "_dv = _rc[:]",
}
CONSOLES = {
    "loom": [sys.executable, "-m", "shell", "--kernel", "loom"],
    "ipyparallel": [sys.executable, "-m", "jupyter_console", "--kernel", "python3"],
}


@dataclass(frozen=True)
class Settings:
    px_warmup: int
    px_calls: int
    px_block: int
    enter_warmup: int
    enter_presses: int
    enter_block: int
    flood_trials: int
    #: Seconds a console may take, after its prompt is back, to show the rest of a flood.
    #: jupyter console never does (module docstring), so each of its floods waits this long.
    late_output_s: float


QUICK = Settings(5, 20, 10, 2, 6, 3, 1, 2.0)
FULL = Settings(20, 300, 50, 5, 60, 10, 3, 15.0)


@dataclass
class Samples:
    px_s: list[float] = field(default_factory=list)
    execute_s: list[float] = field(default_factory=list)
    enter_s: list[float] = field(default_factory=list)
    enter_cpu_s: list[float] = field(default_factory=list)
    flood_s: list[float] = field(default_factory=list)
    flood_prompt_s: list[float] = field(default_factory=list)


METRICS: list[bench.Metric[Samples]] = [
    bench.Metric("px_ms", "%px a=1 inside the kernel", "ms", 1e3, 0.15, lambda s: s.px_s),
    bench.Metric(
        "execute_ms",
        "bare execute a=1 (the floor)",
        "ms",
        1e3,
        None,
        lambda s: s.execute_s,
    ),
    bench.Metric(
        "enter_px_ms", "Enter on %px a=1 -> next prompt", "ms", 1e3, 0.15, lambda s: s.enter_s
    ),
    bench.Metric(
        "enter_cpu_ms",
        "  console's own CPU per Enter",
        "ms",
        1e3,
        None,
        lambda s: s.enter_cpu_s,
    ),
    bench.Metric(
        "flood_s", "4 x 10,000 lines all shown + prompt", "s", 1.0, 0.5, lambda s: s.flood_s
    ),
    bench.Metric(
        "flood_prompt_s",
        "4 x 10,000 lines: prompt only",
        "s",
        1.0,
        None,
        lambda s: s.flood_prompt_s,
    ),
]


# -- inside the kernel ----------------------------------------------------------------------


async def run_cell(client: KernelClient, code: str, timeout: float) -> str:
    """Run ``code``; its stdout. Raises RuntimeError if the cell failed."""
    out: list[str] = []

    def on_output(message: Any) -> None:
        if message.msg_type == "stream" and message.content.get("name") == "stdout":
            out.append(str(message.content.get("text", "")))

    reply = await client.execute(code, on_output=on_output, timeout=timeout)
    if reply.content.get("status") != "ok":
        raise RuntimeError(f"{code!r} failed: {reply.content.get('evalue')}")
    return "".join(out)


def timing_cell(call: str, calls: int) -> str:
    """A cell that times ``calls`` runs of the statement ``call`` and prints the samples
    as JSON."""
    return (
        "import time as _t, json as _j\n_s = []\n"
        f"for _i in range({calls}):\n"
        "    _a = _t.perf_counter()\n"
        f"    {call}\n"
        "    _s.append(_t.perf_counter() - _a)\n"
        "print('SAMPLES', _j.dumps(_s))"
    )


async def measure_in_kernels(s: Settings, samples: dict[str, Samples]) -> None:
    specs = {"loom": "loom", "ipyparallel": "python3"}
    async with (
        start_kernel(specs["loom"], startup_timeout=60) as (_, loom),
        start_kernel(specs["ipyparallel"], startup_timeout=60) as (_, ipp),
    ):
        clients = {"loom": loom, "ipyparallel": ipp}
        for name, client in clients.items():
            for code in [*SETUP[name], PREPARE[name]]:
                await run_cell(client, code, CLUSTER_TIMEOUT_S)
            for call in (CALL[name], BARE):
                await run_cell(client, timing_cell(call, s.px_warmup), PROMPT_TIMEOUT_S)
        try:
            for name in bench.alternating(CONTENDERS, s.px_calls // s.px_block):
                for call, into in (
                    (CALL[name], samples[name].px_s),
                    (BARE, samples[name].execute_s),
                ):
                    text = await run_cell(clients[name], timing_cell(call, s.px_block), 120)
                    found = re.search(r"SAMPLES (\[.*\])", text)
                    if found is None:
                        raise RuntimeError(f"{name}: no samples in {text[-200:]!r}")
                    into += json.loads(found.group(1))
        finally:
            for name, client in clients.items():
                try:
                    await run_cell(client, TEARDOWN[name], CLUSTER_TIMEOUT_S)
                except Exception as exc:  # stopped by PID at the end anyway
                    print(f"note: {name}: stopping the cluster: {exc}", flush=True)


# -- in a pty -------------------------------------------------------------------------------


def prompt_re(number: int) -> re.Pattern[bytes]:
    """``In [3]:`` as written to a terminal: escape sequences allowed in between."""
    return re.compile(_E.join((rb"In ?", rb"\[", str(number).encode(), rb"\]:")))


class Console:
    """One console in a pty, its next prompt number, and how to wait for it."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.child = pexpect.spawn(
            CONSOLES[name][0],
            CONSOLES[name][1:],
            cwd=str(cwd),
            env=env,
            dimensions=(ROWS, COLS),
            timeout=PROMPT_TIMEOUT_S,
            maxread=65536,
        )
        self.child.delaybeforesend = None  # pexpect sleeps 50 ms before each send otherwise
        self.count = 1
        self.child.expect(prompt_re(1), timeout=PROMPT_TIMEOUT_S)

    def run(self, code: str, timeout: float = PROMPT_TIMEOUT_S) -> tuple[float, bytes]:
        """Type ``code`` and Enter at the ready prompt; seconds until the next prompt, and
        what was written before it."""
        self.count += 1
        pattern = prompt_re(self.count)
        started = time.perf_counter()
        self.child.send(code.encode() + b"\r")
        self.child.expect(pattern, timeout=timeout, searchwindowsize=4096)
        took = time.perf_counter() - started
        before = self.child.before
        return took, before if isinstance(before, bytes) else b""

    def flood(self, code: str, late_output_s: float) -> tuple[float, float | None, int]:
        """Run the flood ``code``: seconds until the next prompt, seconds until the prompt
        is back *and* every engine's last line (``9999``) has been shown (None if that
        never happened: a console may show its prompt first, and the rest of the output
        late or never), and how many lines of numbers were shown."""
        took, out = self.run(code, FLOOD_TIMEOUT_S)
        prompt_took = took
        shown = _numbers(out)
        seen = _last_lines(out)
        started = time.perf_counter() - took
        deadline = time.perf_counter() + late_output_s
        while seen < ENGINES:
            try:
                self.child.expect(LAST_LINE, timeout=max(0.0, deadline - time.perf_counter()))
            except pexpect.TIMEOUT:
                before = self.child.before
                shown += _numbers(before if isinstance(before, bytes) else b"")
                return prompt_took, None, shown
            before = self.child.before
            shown += _numbers(before if isinstance(before, bytes) else b"") + 1
            seen += 1
            took = time.perf_counter() - started
        return prompt_took, took, shown

    def close(self) -> None:
        self.child.close(force=True)


LAST_LINE = re.compile(rb"(?:\n|\] )" + _E + str(LINES - 1).encode() + _E + rb"\r?\n")
NOTES: list[str] = []


def _numbers(out: bytes) -> int:
    """How many lines of the flood (a number, maybe after a label) ``out`` shows."""
    shown = ANSI.sub(b"", out).decode(errors="replace")
    return len(re.findall(r"(?m)(?:^|\] )\d+\r?$", shown))


def _last_lines(out: bytes) -> int:
    """How many times the last line of the flood (``9999``) was shown in ``out``."""
    shown = ANSI.sub(b"", out).decode(errors="replace")
    return len(re.findall(rf"(?m)(?:^|\] ){LINES - 1}\r?$", shown))


def console_env(tmp: Path) -> dict[str, str]:
    env = bench.child_env(tmp)
    env.update(
        TERM="xterm-256color",
        PROMPT_TOOLKIT_NO_CPR="1",
        PAGER="cat",
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        IPYTHONDIR=str(tmp / "ipython"),
        LOOM_HISTORY_FILE=str(tmp / "history.sqlite"),
        LOOM_CONSOLE_HISTORY=str(tmp / "console_history"),
    )
    return env


def measure_in_consoles(s: Settings, samples: dict[str, Samples], tmp: Path) -> None:
    env = console_env(tmp)
    consoles: dict[str, Console] = {}
    try:
        for name in CONTENDERS:
            console = consoles[name] = Console(name, env, tmp)
            for code in SETUP[name]:
                console.run(code.replace("\n", "; "), 180)
            for _ in range(s.enter_warmup):
                console.run("%px a=1")
        for name in bench.alternating(CONTENDERS, s.enter_presses // s.enter_block):
            cpu = bench.cpu_seconds(consoles[name].child.pid)
            for _ in range(s.enter_block):
                took, _out = consoles[name].run("%px a=1")
                samples[name].enter_s.append(took)
            used = bench.cpu_seconds(consoles[name].child.pid) - cpu
            samples[name].enter_cpu_s.append(used / s.enter_block)
        flood = f"%px for i in range({LINES}): print(i)"
        for name in bench.alternating(CONTENDERS, s.flood_trials):
            prompt_took, took, shown = consoles[name].flood(flood, s.late_output_s)
            samples[name].flood_prompt_s.append(prompt_took)
            if took is not None:
                samples[name].flood_s.append(took)
                continue
            if name == "loom":
                raise RuntimeError(f"loom showed {shown} of {ENGINES * LINES} lines")
            # The peer never shows everything: its figure is the time to its prompt (a
            # lower bound of what was asked, which makes Loom's ratio look worse).
            samples[name].flood_s.append(prompt_took)
            NOTES.append(
                f"{name}: prompt back after {prompt_took:.2f} s with {shown} of "
                f"{ENGINES * LINES} lines shown; the rest never came within "
                f"{s.late_output_s:.0f} s: its flood figure is its time to the prompt"
            )
        for name, console in consoles.items():
            try:
                console.run(TEARDOWN[name], CLUSTER_TIMEOUT_S)
            except Exception as exc:
                print(f"note: {name}: stopping the cluster: {exc}", flush=True)
    finally:
        for console in consoles.values():
            console.close()


# -- the run --------------------------------------------------------------------------------


def report_lines(summary: dict[str, dict[str, Any]]) -> Iterator[str]:
    columns = bench.Columns(n=4, value=10, unit=4)
    yield from bench.table_lines(METRICS, summary, "ipyparallel", "ipyparallel", columns)


def main() -> int:
    quick, s = bench.start_run("bench_px", __doc__, QUICK, FULL)
    bench.become_subreaper()
    samples = {name: Samples() for name in CONTENDERS}
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="loom-bench-px-") as name:
            tmp = Path(name)
            install_kernelspec(prefix=str(tmp / "prefix"))
            os.environ.update(console_env(tmp))
            os.environ["JUPYTER_PATH"] = str(tmp / "prefix" / "share" / "jupyter")
            asyncio.run(measure_in_kernels(s, samples))
            measure_in_consoles(s, samples, tmp)
    except Exception as exc:
        traceback.print_exc()
        print(f"bench_px: FAILED: {type(exc).__name__}: {bench.unwrap(exc)}", flush=True)
        return 1
    finally:
        left = bench.descendants(os.getpid())
        for pid in left:
            bench.sigkill_group(pid)
        still = bench.wait_gone(left, GONE_TIMEOUT_S)
        if left:
            print(f"bench_px: killed leftover processes {left}", flush=True)
        if still:
            print(f"bench_px: processes still alive: {still}", flush=True)
    summary = bench.summarize(METRICS, samples, "ipyparallel")
    for name in CONTENDERS:  # what the magic adds to the execute it stands on
        px, floor = summary["px_ms"][name], summary["execute_ms"][name]
        NOTES.append(
            f"{name}: %px a=1 takes {px - floor:.2f} ms more than its bare execute "
            f"({px:.2f} vs {floor:.2f} ms)"
        )
    for line in report_lines(summary):
        print(line)
    load = os.getloadavg()[0]
    for note in NOTES:
        print(f"note: {note}")
    print(f"run took {time.monotonic() - started:.0f} s; load average now {load:.2f}")
    bench.print_bench_json(
        {"benchmark": "px", "quick": quick, "engines": ENGINES, "metrics": summary, "notes": NOTES}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
