"""Loom's ``KernelClient`` against jupyter_client's ``AsyncKernelClient``, on one ipykernel.

Measures the ``execute('pass')`` round trip as a front end needs it: the request is
done when its ``execute_reply`` *and* its ``status: idle`` on iopub have both arrived
(messaging spec, "Kernel status"), so all of its output is known to be in. The same
kernel serves every client, so every figure includes the same kernel work (most of a
round trip): the ratio stays near 1, and the difference of the medians is what the
clients cost apart. Three ways are timed:

- **loom**: ``await KernelClient.execute("pass")``, which returns exactly then.
- **jupyter_client, execute_interactive**: ``await client.execute_interactive("pass",
  output_hook=no-op, allow_stdin=False)``, its own way of waiting for idle and reply.
- **jupyter_client, hand loop**: ``client.execute("pass")``, then ``get_shell_msg``
  until the reply to that ``msg_id``, then ``get_iopub_msg`` until its ``idle``: the
  least a jupyter_client user can write.

jupyter_client's figure is the faster of its two ways (the report says which).

Fairness: only one client is connected at a time. A connected client reads (Loom's
reader tasks) or queues (jupyter_client's sockets) the iopub broadcast caused by the
others, which would bill one client for another's traffic; so each block of round
trips opens its client, waits until it is ready and does a few untimed warm-up round
trips, is timed, and closes the client again. Blocks of the three ways are interleaved
(the order rotating each round) so that a change in the machine's load cannot favour
one of them. Both libraries use their own ZeroMQ context (as in separate programs);
jupyter_client runs without its heartbeat channel, which would start a thread; Loom's
client pings the heartbeat from its own loop, as it always does. ``allow_stdin`` is
False for all (Loom sends False when no input handler is set).

The kernel is ``python -m ipykernel_launcher -f FILE`` with a connection file written
by ``jupyter_client.connect.write_connection_file``, in a session of its own, and an
``IPYTHONDIR`` in the run's temporary directory (its history stays out of yours); it is
asked to shut down and killed by PID in any case.

Prints the medians (ms), the ratio loom/jupyter_client (target: below 1, ``MISSED``
otherwise) and a final ``BENCH_JSON {...}`` line. Exits 0 whether the target is met or
not; non-zero only when it could not measure (the kernel crashed, hung or answered
wrongly). Linux only (``pidfd_open``).

Run: ``python tests/benchmarks/bench_client.py [--quick]``.
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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.connect import write_connection_file

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _bench_common, from any cwd
import _bench_common as bench  # it also puts the repository on sys.path

from kernel import KernelClient, connect_client
from kernel.protocol import ConnectionInfo

TARGET = 1.0  # loom / jupyter_client must be below this
REQUEST_TIMEOUT_S = 30.0
GRACEFUL_EXIT_S = 5.0
READY_TIMEOUT_S = 60.0
WAYS = ("loom", "jc_interactive", "jc_loop")
LABELS = {
    "loom": "loom KernelClient.execute",
    "jc_interactive": "jupyter_client execute_interactive",
    "jc_loop": "jupyter_client hand loop",
}


@dataclass(frozen=True)
class Settings:
    rounds: int  # blocks per way
    block: int  # timed round trips per block
    block_warmup: int  # untimed round trips after (re)connecting
    kernel_warmup: int  # untimed round trips before the first round


QUICK = Settings(3, 20, 3, 10)  # --quick: a smoke run
FULL = Settings(10, 100, 5, 50)


class BenchError(Exception):
    """The kernel misbehaved (wrong reply, died): the measurement is meaningless."""


# -- the kernel process ---------------------------------------------------------------------


def spawn_kernel(path: Path, workdir: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["IPYTHONDIR"] = str(workdir / "ipython")
    env.pop("PYTHONSTARTUP", None)
    env.pop("PYTHONASYNCIODEBUG", None)  # ipykernel 7 cannot shut down in asyncio debug mode
    return bench.spawn([sys.executable, "-m", "ipykernel_launcher", "-f", str(path)], workdir, env)


async def until_exit(proc: subprocess.Popen[bytes], work: Awaitable[Any]) -> Any:
    """Await ``work``, raising :class:`BenchError` at once if the kernel exits meanwhile."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(bench.exited_within(proc, float("inf")))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            raise BenchError(f"the kernel exited with status {proc.poll()}")
        return task.result()
    finally:
        task.cancel()
        watcher.cancel()


# -- the three ways of timing one round trip -----------------------------------------------------

Block = Callable[[int, list[float] | None], Awaitable[None]]


def _check_reply(content: dict[str, Any], what: str) -> None:
    if content.get("status") != "ok":
        raise BenchError(f"{what}: reply status {content.get('status')!r}: {content}")


@contextlib.asynccontextmanager
async def loom_way(info: ConnectionInfo) -> AsyncIterator[Block]:
    async with connect_client(info, ready_timeout=READY_TIMEOUT_S) as client:

        async def block(count: int, out: list[float] | None) -> None:
            await loom_passes(client, count, out)

        yield block


async def loom_passes(client: KernelClient, count: int, out: list[float] | None) -> None:
    for _ in range(count):
        t0 = time.perf_counter()
        reply = await client.execute("pass", timeout=REQUEST_TIMEOUT_S)
        elapsed = time.perf_counter() - t0
        _check_reply(reply.content, "loom execute('pass')")
        if out is not None:
            out.append(elapsed)


@contextlib.asynccontextmanager
async def jc_client(path: Path, context: zmq.asyncio.Context) -> AsyncIterator[AsyncKernelClient]:
    client = AsyncKernelClient(context=context)
    client.load_connection_file(str(path))
    client.start_channels(hb=False)  # its heartbeat channel is a thread
    try:
        await client.wait_for_ready(timeout=READY_TIMEOUT_S)
        yield client
    finally:
        client.stop_channels()


def _no_output(msg: dict[str, Any]) -> None:
    pass


@contextlib.asynccontextmanager
async def jc_interactive_way(path: Path, context: zmq.asyncio.Context) -> AsyncIterator[Block]:
    async with jc_client(path, context) as client:

        async def block(count: int, out: list[float] | None) -> None:
            for _ in range(count):
                t0 = time.perf_counter()
                reply = await client.execute_interactive(
                    "pass", allow_stdin=False, output_hook=_no_output, timeout=REQUEST_TIMEOUT_S
                )
                elapsed = time.perf_counter() - t0
                _check_reply(reply["content"], "jupyter_client execute_interactive('pass')")
                if out is not None:
                    out.append(elapsed)

        yield block


@contextlib.asynccontextmanager
async def jc_loop_way(path: Path, context: zmq.asyncio.Context) -> AsyncIterator[Block]:
    async with jc_client(path, context) as client:

        async def block(count: int, out: list[float] | None) -> None:
            for _ in range(count):
                t0 = time.perf_counter()
                msg_id = client.execute("pass", allow_stdin=False)
                while True:
                    reply = await client.get_shell_msg(timeout=REQUEST_TIMEOUT_S)
                    if reply["parent_header"].get("msg_id") == msg_id:
                        break
                while True:
                    msg = await client.get_iopub_msg(timeout=REQUEST_TIMEOUT_S)
                    if (
                        msg["parent_header"].get("msg_id") == msg_id
                        and msg["msg_type"] == "status"
                        and msg["content"]["execution_state"] == "idle"
                    ):
                        break
                elapsed = time.perf_counter() - t0
                _check_reply(reply["content"], "jupyter_client hand loop execute('pass')")
                if out is not None:
                    out.append(elapsed)

        yield block


# -- the run -------------------------------------------------------------------------------------


async def measure(s: Settings, path: Path, proc: subprocess.Popen[bytes]) -> dict[str, list[float]]:
    info = ConnectionInfo.read(path)
    jc_context = zmq.asyncio.Context()
    openers: dict[str, Callable[[], contextlib.AbstractAsyncContextManager[Block]]] = {
        "loom": lambda: loom_way(info),
        "jc_interactive": lambda: jc_interactive_way(path, jc_context),
        "jc_loop": lambda: jc_loop_way(path, jc_context),
    }
    samples: dict[str, list[float]] = {way: [] for way in WAYS}

    async def one_block(way: str, count: int, warmup: int, out: list[float] | None) -> None:
        async with openers[way]() as block:
            await block(warmup, None)
            await block(count, out)

    try:
        # Start-up: wait for the kernel, and warm it (and the bytecode of all three) up.
        await until_exit(proc, one_block("loom", s.kernel_warmup, 0, None))
        for way in WAYS:
            await until_exit(proc, one_block(way, s.block_warmup, 0, None))
        for round_no in range(s.rounds):
            shift = round_no % len(WAYS)
            for way in WAYS[shift:] + WAYS[:shift]:
                await until_exit(proc, one_block(way, s.block, s.block_warmup, samples[way]))
    finally:
        jc_context.destroy(linger=0)
    return samples


async def shut_down(path: Path, proc: subprocess.Popen[bytes]) -> None:
    """Ask the kernel to exit (through a Loom client, not timed) and wait for it briefly."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(GRACEFUL_EXIT_S):
            async with connect_client(ConnectionInfo.read(path), wait_ready=False) as client:
                await client.shutdown()
    await bench.exited_within(proc, GRACEFUL_EXIT_S)


async def run(s: Settings, workdir: Path) -> dict[str, list[float]]:
    path = workdir / "kernel.json"
    write_connection_file(str(path), ip="127.0.0.1", key=ConnectionInfo.new_key())
    proc = spawn_kernel(path, workdir)
    try:
        try:
            return await measure(s, path, proc)
        finally:
            await shut_down(path, proc)
    finally:
        bench.kill(proc)


# -- report --------------------------------------------------------------------------------------


def summarize(samples: dict[str, list[float]], quick: bool) -> dict[str, Any]:
    medians = {way: statistics.median(v) * 1e3 for way, v in samples.items()}
    jc_way = min(("jc_interactive", "jc_loop"), key=medians.__getitem__)
    ratio = medians["loom"] / medians[jc_way]
    return {
        "benchmark": "client",
        "quick": quick,
        "metrics": {
            "execute_pass_ms": {
                "unit": "ms",
                "loom": medians["loom"],
                "jupyter_client": medians[jc_way],
                "jupyter_client_way": jc_way,
                "jupyter_client_interactive": medians["jc_interactive"],
                "jupyter_client_loop": medians["jc_loop"],
                "ratio": ratio,
                "target": f"< {TARGET}x",
                "met": ratio < TARGET,
                "n": len(samples["loom"]),
            }
        },
    }


def report_lines(samples: dict[str, list[float]], report: dict[str, Any]) -> list[str]:
    m = report["metrics"]["execute_pass_ms"]
    lines = [f"{'execute(pass) round trip (reply + idle)':<40} {'n':>5} {'median':>9} {'p90':>9}"]
    lines.append("-" * len(lines[0]))
    for way in WAYS:
        values = sorted(samples[way])
        p90 = values[int(0.9 * (len(values) - 1))] * 1e3
        lines.append(
            f"{LABELS[way]:<40} {len(values):>5} {statistics.median(values) * 1e3:>6.3f} ms "
            f"{p90:>6.3f} ms"
        )
    verdict = "" if m["met"] else "  MISSED"
    lines.append(
        f"ratio loom / jupyter_client ({LABELS[m['jupyter_client_way']]}, the faster): "
        f"{m['ratio']:.3f}x  target {m['target']}{verdict}"
    )
    return lines


def main() -> int:
    quick, settings = bench.start_run("bench_client", __doc__, QUICK, FULL)
    try:
        with tempfile.TemporaryDirectory(prefix="loom-bench-client-") as tmp:
            samples = asyncio.run(run(settings, Path(tmp)))
    except (BenchError, TimeoutError, RuntimeError) as exc:
        # RuntimeError: what jupyter_client's wait_for_ready raises for a silent kernel.
        print(f"bench_client: FAILED: {type(exc).__name__}: {exc}", flush=True)
        return 1
    report = summarize(samples, quick)
    for line in report_lines(samples, report):
        print(line)
    bench.print_bench_json(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
