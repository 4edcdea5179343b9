"""Loom's kernel against ipykernel, side by side in one run, driven by the same client.

Both kernels are measured with Loom's :class:`~kernel.KernelClient`, so whatever the
client costs is paid equally by both and the ratio compares the kernels alone:

- **startup**: process spawn until the first ``kernel_info_reply`` arrives; a fresh
  process per trial, trials interleaved loom/ipykernel (the order alternates each round),
  after one discarded warm-up round that fills the page cache and the bytecode cache.
- **execute('pass')**: one round trip, ``execute_reply`` and ``status: idle`` both seen.
- **stdout throughput**: ``for i in range(100000): print(i)`` from sending until the
  request is finished; every line is checked to have arrived, in order.
- **warm completion**: ``complete_request`` for ``import o`` and for ``os.pa`` (after
  ``import os``), each after 3 warm-up requests.
- **idle RSS** (``VmRSS``) and OS thread count (``/proc/PID/task``) of a kernel after
  startup plus one ``pass``, sampled in every startup trial.

The last three run on one long-lived kernel of each kind, both up at once and measured
in alternating blocks (100 round trips, one completion pair, one print loop), so that a
change in the machine's background load cannot favour one of them.

Startup is measured the way Loom's ``KernelManager`` starts a kernel: spawn, wait until
the heartbeat echoes (a probe socket whose refused connects libzmq retries every 10 ms),
then connect the client and send ``kernel_info_request``. A client connected before the
kernel binds would instead wait for libzmq's own retry of its refused connects, every
100 ms, which rounded every start up to a 100 ms step.

Kernels run with ``PYTHONPYCACHEPREFIX`` set to the run's temporary directory (and
``PYTHONDONTWRITEBYTECODE`` unset): otherwise, where bytecode writing is disabled, Loom's
uninstalled sources would be recompiled at every start while ipykernel's installed
package has its ``.pyc`` files. This way both compile once, in the warm-up round, and
nothing is written into the source tree.

Prints a table (medians, ratio loom/ipykernel, target, ``MISSED`` where a target is
missed) and a final ``BENCH_JSON {...}`` line. The exit code is 0 whether targets are
met or not; it is non-zero only when the benchmark itself could not run (a kernel
crashed, hung or answered wrongly). Linux only (``/proc``, ``pidfd_open``).

Run: ``python tests/benchmarks/bench_kernel.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.connect import write_connection_file

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _bench_common, from any cwd
import _bench_common as bench  # it also puts the repository on sys.path

from kernel import KernelClient, connect_client
from kernel.client._heartbeat_monitor import wait_for_heartbeat
from kernel.protocol import ConnectionInfo, Message

KERNELS: dict[str, Callable[[str], list[str]]] = {
    "loom": lambda f: [sys.executable, "-m", "kernel", "-f", f],
    "ipykernel": lambda f: [sys.executable, "-m", "ipykernel_launcher", "-f", f],
}
STDOUT_LINES = 100_000
GRACEFUL_EXIT_S = 5.0
EXECUTE_BLOCK = 100  # round trips per kernel before switching to the other


@dataclass(frozen=True)
class Settings:
    startup_trials: int
    execute_warmup: int
    execute_iterations: int
    stdout_trials: int
    complete_warmup: int
    complete_trials: int


QUICK = Settings(1, 20, 200, 1, 3, 10)  # --quick: a smoke run (starts: warm-up + 1)
FULL = Settings(7, 50, 1000, 3, 3, 50)


@dataclass
class Samples:
    """Raw samples of one kernel, filled in by the phases below."""

    startup_s: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    execute_s: list[float] = field(default_factory=list)
    stdout_lines_per_s: list[float] = field(default_factory=list)
    stdout_problems: list[str] = field(default_factory=list)
    complete_import_s: list[float] = field(default_factory=list)
    complete_attr_s: list[float] = field(default_factory=list)


class BenchError(Exception):
    """A kernel misbehaved (wrong reply, lost output): the measurement is meaningless."""


# -- processes -----------------------------------------------------------------------


@dataclass
class Kernel:
    name: str
    proc: subprocess.Popen[bytes]
    client: KernelClient
    spawned_at: float


@contextlib.asynccontextmanager
async def open_kernel(name: str, workdir: Path, env: dict[str, str]) -> AsyncIterator[Kernel]:
    """Spawn the kernel, wait for its heartbeat, connect a client (see the module docstring);
    on exit shut it down, SIGKILL if need be."""
    path = workdir / f"{name}-{time.monotonic_ns()}.json"
    write_connection_file(str(path), ip="127.0.0.1", key=ConnectionInfo.new_key())
    info = ConnectionInfo.read(path)
    spawned_at = time.perf_counter()
    proc = bench.spawn(KERNELS[name](str(path)), workdir, env)
    try:
        async with asyncio.timeout(60):
            await wait_for_heartbeat(info.url("hb"))
        async with connect_client(info, wait_ready=False) as client:
            try:
                yield Kernel(name, proc, client, spawned_at)
            finally:
                await _shut_down(client, proc)
    finally:
        bench.kill(proc)


async def _shut_down(client: KernelClient, proc: subprocess.Popen[bytes]) -> None:
    try:
        if proc.poll() is None:
            with contextlib.suppress(Exception):
                await client.shutdown(timeout=GRACEFUL_EXIT_S)
            await bench.exited_within(proc, GRACEFUL_EXIT_S)
    finally:
        bench.kill(proc)


# -- measurements ------------------------------------------------------------------------


def read_proc(pid: int) -> tuple[int, int]:
    """``(VmRSS in KiB, number of OS threads)`` of a live process."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/task"))


def _check_ok(reply: Message, what: str) -> None:
    if reply.content.get("status") != "ok":
        raise BenchError(f"{what}: reply status {reply.content.get('status')!r}: {reply.content}")


async def startup_trial(name: str, workdir: Path, env: dict[str, str], out: Samples | None) -> None:
    """One fresh kernel: time to first ``kernel_info_reply``, then idle RSS and threads."""
    async with open_kernel(name, workdir, env) as k:
        async with asyncio.timeout(60):
            await k.client.request("kernel_info_request", wait_for_idle=False)
        elapsed = time.perf_counter() - k.spawned_at
        async with asyncio.timeout(60):
            await k.client.wait_for_ready(None)
            _check_ok(await k.client.execute("pass"), f"{name} execute('pass')")
        rss, threads = read_proc(k.proc.pid)
        if out is not None:
            out.startup_s.append(elapsed)
            out.rss_kib.append(rss)
            out.threads.append(threads)


async def execute_passes(k: Kernel, count: int, out: list[float] | None) -> None:
    """``count`` timed ``execute('pass')`` round trips (reply and idle), appended to ``out``."""
    client = k.client
    for _ in range(count):
        t0 = time.perf_counter()
        reply = await client.execute("pass")
        elapsed = time.perf_counter() - t0
        _check_ok(reply, f"{k.name} execute('pass')")
        if out is not None:
            out.append(elapsed)


async def print_flood(k: Kernel, out: Samples) -> None:
    """One ``print`` loop of ``STDOUT_LINES`` lines: lines/s, and whether all arrived."""
    chunks: list[str] = []

    def collect(msg: Message) -> None:
        if msg.msg_type == "stream" and msg.content.get("name") == "stdout":
            chunks.append(msg.content["text"])

    t0 = time.perf_counter()
    reply = await k.client.execute(f"for i in range({STDOUT_LINES}): print(i)", on_output=collect)
    elapsed = time.perf_counter() - t0
    _check_ok(reply, f"{k.name} print loop")
    text = "".join(chunks)
    if text != "".join(f"{i}\n" for i in range(STDOUT_LINES)):
        got = len(text.splitlines())
        out.stdout_problems.append(
            f"{got} of {STDOUT_LINES} lines arrived"
            if got != STDOUT_LINES
            else "all lines arrived but their text differs"
        )
    out.stdout_lines_per_s.append(STDOUT_LINES / elapsed)


async def _complete(k: Kernel, code: str, expect: str) -> float:
    """Time one ``complete_request`` for ``code``; some match must end with ``expect``."""
    t0 = time.perf_counter()
    content = await k.client.complete(code)
    elapsed = time.perf_counter() - t0
    matches = [str(m) for m in content.get("matches", [])]
    if content.get("status") != "ok" or not any(m.endswith(expect) for m in matches):
        raise BenchError(f"{k.name}: complete({code!r}) lacks {expect!r}: {content}")
    return elapsed


async def complete_pair(k: Kernel, out: Samples | None) -> None:
    """``import o`` then ``os.pa`` (``os`` is imported by :func:`prepare`)."""
    import_s = await _complete(k, "import o", "os")
    attr_s = await _complete(k, "os.pa", "path")
    if out is not None:
        out.complete_import_s.append(import_s)
        out.complete_attr_s.append(attr_s)


async def prepare(k: Kernel, s: Settings) -> None:
    """Make ``k`` warm: ready, execute warm-up, ``import os``, completion warm-up."""
    await k.client.wait_for_ready(None)
    await execute_passes(k, s.execute_warmup, None)
    _check_ok(await k.client.execute("import os"), f"{k.name} import os")
    for _ in range(s.complete_warmup):
        await complete_pair(k, None)


async def steady_state(
    s: Settings, workdir: Path, env: dict[str, str], samples: dict[str, Samples]
) -> None:
    """Long-lived kernels of both kinds, measured in alternating blocks.

    Alternating keeps a change in background load from favouring one kernel; the
    kernel not being measured is idle meanwhile.
    """
    async with contextlib.AsyncExitStack() as stack:
        kernels = [await stack.enter_async_context(open_kernel(n, workdir, env)) for n in KERNELS]
        async with asyncio.timeout(120):
            for k in kernels:
                await prepare(k, s)
        blocks = max(1, s.execute_iterations // EXECUTE_BLOCK)
        async with asyncio.timeout(60 + 0.1 * s.execute_iterations):
            for k in bench.alternating(kernels, blocks):
                await execute_passes(k, s.execute_iterations // blocks, samples[k.name].execute_s)
        async with asyncio.timeout(60 + 2.0 * s.complete_trials):
            for k in bench.alternating(kernels, s.complete_trials):
                await complete_pair(k, samples[k.name])
        async with asyncio.timeout(300 * s.stdout_trials):
            for k in bench.alternating(kernels, s.stdout_trials):
                await print_flood(k, samples[k.name])


async def run(s: Settings, workdir: Path, env: dict[str, str]) -> dict[str, Samples]:
    samples = {name: Samples() for name in KERNELS}
    for name, record in bench.startup_rounds(list(KERNELS), s.startup_trials):
        await startup_trial(name, workdir, env, samples[name] if record else None)
    await steady_state(s, workdir, env, samples)
    return samples


# -- report ------------------------------------------------------------------------------


METRICS: tuple[bench.Metric[Samples], ...] = (  # targets on the ratio loom/ipykernel
    bench.Metric("startup_s", "start -> kernel_info_reply", "s", 1, 0.4, lambda x: x.startup_s),
    bench.Metric("execute_pass_ms", "execute('pass') round trip", "ms", 1e3, 0.2,
                 lambda x: x.execute_s),
    bench.Metric("stdout_lines_per_s", f"stdout: print {STDOUT_LINES} lines", "lines/s", 1, 2.0,
                 lambda x: x.stdout_lines_per_s, higher_is_better=True),
    bench.Metric("complete_import_ms", "warm complete 'import o'", "ms", 1e3, 1.0,
                 lambda x: x.complete_import_s),
    bench.Metric("complete_attr_ms", "warm complete 'os.pa'", "ms", 1e3, 1.0,
                 lambda x: x.complete_attr_s),
    bench.Metric("idle_rss_mib", "idle RSS (startup + 1 execute)", "MiB", 1 / 1024, 0.6,
                 lambda x: [float(v) for v in x.rss_kib]),
)  # fmt: skip


def report_lines(summary: dict[str, dict[str, Any]], samples: dict[str, Samples]) -> Iterator[str]:
    """The table, and a last row for the OS threads (informative)."""
    yield from bench.table_lines(
        METRICS, summary, "ipykernel", "ipykernel", bench.Columns(5, 12, 8)
    )
    threads = {k: statistics.median(v.threads) for k, v in samples.items()}
    yield (
        f"{'OS threads of idle kernel':<34} {len(samples['loom'].threads):>5} "
        f"{threads['loom']:>12g} {threads['ipykernel']:>12g} {'threads':<8} "
        f"{threads['loom'] / threads['ipykernel']:>6.3f}x  (informative)"
    )


def kernel_env(workdir: Path) -> dict[str, str]:
    """The kernels' environment: :func:`_bench_common.child_env`, history in ``workdir``."""
    env = bench.child_env(workdir)
    # Keep the benchmark's history out of the user's (unless the caller chose a file).
    env.setdefault("LOOM_HISTORY_FILE", str(workdir / "loom-history.sqlite"))
    return env


def main() -> int:
    quick, settings = bench.start_run("bench_kernel", __doc__, QUICK, FULL)
    try:
        with tempfile.TemporaryDirectory(prefix="loom-bench-") as tmp:
            samples = asyncio.run(run(settings, Path(tmp), kernel_env(Path(tmp))))
    except Exception as exc:  # could not measure (crash, hang, wrong answer): say why
        traceback.print_exc()
        cause = bench.unwrap(exc)  # the task groups of the clients wrap what the body raised
        print(f"bench_kernel: FAILED: {type(cause).__name__}: {cause}", flush=True)
        return 1
    finally:
        bench.kill_all_left()
    summary = bench.summarize(METRICS, samples, "ipykernel")
    for line in report_lines(summary, samples):
        print(line)
    problems = {k: v.stdout_problems for k, v in samples.items() if v.stdout_problems}
    for name, found in problems.items():
        print(f"stdout LOST OUTPUT in {name}: {'; '.join(found)}")
    report = {
        "benchmark": "kernel",
        "quick": quick,
        "metrics": summary,
        "threads": {k: statistics.median(v.threads) for k, v in samples.items()},
        "stdout_complete": {k: not v.stdout_problems for k, v in samples.items()},
    }
    bench.print_bench_json(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
