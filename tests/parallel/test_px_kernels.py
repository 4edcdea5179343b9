"""End to end: ``%load_ext parallel`` and the ``%px`` magics in Loom's kernel and in ipykernel.

Real processes: a kernel (``loom`` or ipykernel's ``python3``) and a cluster (a controller
and engines), all killed by PID afterwards. Each scenario is a list of cells run through a
kernel client; the waits are for messages, each bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _cluster_support import isolate, running_cluster
from _support import Reaper, is_gone, run, wait_gone

from kernel import KernelClient, KernelSpec, builtin_loom_spec, get_kernel_spec, start_kernel
from kernel.client import KernelManager
from kernel.protocol import Message

TIMEOUT = 60.0
KERNELS = ["loom", "python3"]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


@dataclass
class Cell:
    """What one cell produced, ANSI colours removed."""

    status: str = ""
    stdout: str = ""
    stderr: str = ""
    results: list[str] = field(default_factory=list)
    displays: list[str] = field(default_factory=list)
    ename: str = ""
    traceback: str = ""

    def add(self, message: Message) -> None:
        content = message.content
        if message.msg_type == "stream":
            text = _ANSI.sub("", content["text"])
            if content["name"] == "stderr":
                self.stderr += text
            else:
                self.stdout += text
        elif message.msg_type == "execute_result":
            self.results.append(content["data"]["text/plain"])
        elif message.msg_type in ("display_data", "update_display_data"):
            self.displays.append(content["data"].get("text/plain", ""))
        elif message.msg_type == "error":
            self.ename = content["ename"]
            self.traceback = _ANSI.sub("", "\n".join(content["traceback"]))

    @property
    def everything(self) -> str:
        return "\n".join([self.stdout, self.stderr, *self.displays, self.traceback])


async def cell(client: KernelClient, code: str, timeout: float = TIMEOUT) -> Cell:
    out = Cell()
    reply = await client.execute(code, on_output=out.add, timeout=timeout)
    out.status = reply.content["status"]
    if out.status == "error" and not out.ename:
        out.ename = reply.content.get("ename", "")
    return out


async def ok(client: KernelClient, code: str, timeout: float = TIMEOUT) -> Cell:
    result = await cell(client, code, timeout)
    assert result.status == "ok", (code, result)
    return result


def outs(result: Cell) -> dict[int, str]:
    """``Out[engine:n]: value`` lines of a cell's stdout, by engine."""
    found = re.findall(r"^Out\[(\d+):\d+\]: (.*)$", result.stdout, re.MULTILINE)
    return {int(engine): value for engine, value in found}


def _spec(kernel_name: str) -> KernelSpec:
    return builtin_loom_spec() if kernel_name == "loom" else get_kernel_spec("python3")


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_px_magics_run_cells_on_the_engines(kernel_name: str, tmp_path: Path) -> None:
    with running_cluster(2):

        async def scenario(reaper: Reaper) -> None:
            async with start_kernel(spec=_spec(kernel_name), startup_timeout=30) as (m, client):
                reaper.track_manager(m)
                await ok(client, "%load_ext parallel")
                assert (await ok(client, "%px a = 1")).stdout == ""
                printed = await ok(client, "%px print('a is', a)")
                assert sorted(printed.stdout.splitlines()) == [
                    "[stdout:0] a is 1",
                    "[stdout:1] a is 1",
                ]
                values = await ok(client, "%%px\nimport os\nb = a * 2\nb")
                assert outs(values) == {0: "2", 1: "2"}
                await _errors_are_grouped(client)
                await _magics_called_from_code(client)
                await _engines_keep_history_in_memory(client, kernel_name, tmp_path)
                await _noblock_and_targets(client)
                await _local_and_autopx(client)
                activated = await ok(
                    client,
                    "import parallel\nview = parallel.Client().activate(1, suffix='1')\nview",
                )
                assert activated.results == ["<DirectView 1>"]
                assert outs(await ok(client, "%px1 a + 1000")) == {1: "1001"}

        run(scenario, timeout=240)


async def _errors_are_grouped(client: KernelClient) -> None:
    failed = await cell(client, "%px 1/0")
    assert failed.status == "error"
    assert failed.ename == "PxError"
    assert failed.everything.count("ZeroDivisionError on engines 0, 1") >= 1
    assert failed.everything.count("ZeroDivisionError: division by zero") == 1  # one traceback
    bad_target = await cell(client, "%px -t 5 a")
    assert (bad_target.status, bad_target.ename) == ("error", "UsageError")
    assert "engine 5" in bad_target.everything
    assert "engines 0, 1" in bad_target.everything
    bad_option = await cell(client, "%px --bogus a")
    assert bad_option.ename == "UsageError"
    assert "unknown option '--bogus'" in bad_option.everything


async def _magics_called_from_code(client: KernelClient) -> None:
    """``get_ipython().run_line_magic('px', ...)`` / ``run_cell_magic`` run the magic to the
    end (Loom's kernel returned an un-awaited coroutine: nothing ran, a RuntimeWarning came
    later)."""
    called = await ok(
        client,
        "import gc, warnings\n"
        "with warnings.catch_warnings(record=True) as _w:\n"
        "    warnings.simplefilter('always')\n"
        "    _r1 = get_ipython().run_line_magic('px', 'c = 5')\n"
        "    _r2 = get_ipython().run_cell_magic('px', '', 'd = c + 1')\n"
        "    gc.collect()\n"
        "print(type(_r1).__name__, type(_r2).__name__, [str(w.message) for w in _w])",
    )
    assert called.stdout.strip() == "NoneType NoneType []", called
    assert outs(await ok(client, "%px (c, d)")) == {0: "(5, 6)", 1: "(5, 6)"}


async def _engines_keep_history_in_memory(
    client: KernelClient, kernel_name: str, tmp_path: Path
) -> None:
    """Engines number and keep their cells (``In``, ``%history``) but write none of them
    into the user's history file (``LOOM_HISTORY_FILE``, shared with Loom's kernel): a new
    console's Up-arrow must not show code typed into engines."""
    await ok(client, "%px zz = 7")
    shown = await ok(client, "%%px\nprint(In[-2])\n%history")
    lines = [line.split("] ", 1)[-1] for line in shown.stdout.splitlines()]
    assert lines.count("zz = 7") == 4, shown.stdout  # each engine: In[-2] and %history
    path = tmp_path / "history.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master")}
        raw = [r[0] for r in db.execute("select source_raw from history")] if tables else []
    assert "zz = 7" not in raw
    if kernel_name == "loom":  # the kernel's own cells are there
        assert "%px zz = 7" in raw


async def _noblock_and_targets(client: KernelClient) -> None:
    pending = await ok(client, "%px --noblock a * 10")
    assert len(pending.results) == 1
    assert pending.results[0].startswith("<AsyncResult(%px)")
    assert outs(await ok(client, "%pxresult")) == {0: "10", 1: "10"}
    assert outs(await ok(client, "%px -t 0 a + 5")) == {0: "6"}
    assert outs(await ok(client, "%%px --targets 1 --no-stream\nprint('one')\na")) == {1: "1"}


async def _local_and_autopx(client: KernelClient) -> None:
    await ok(client, "%%px --local\nboth = 3")
    assert (await ok(client, "both")).results == ["3"]
    assert outs(await ok(client, "%px both")) == {0: "3", 1: "3"}
    assert "%autopx enabled" in (await ok(client, "%autopx")).stdout
    assert outs(await ok(client, "c = a + 100\nc")) == {0: "101", 1: "101"}
    assert "%autopx disabled" in (await ok(client, "%autopx")).stdout
    assert (await cell(client, "c")).ename == "NameError"  # c exists only on the engines


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_interrupting_a_blocking_px_interrupts_the_engines(kernel_name: str) -> None:
    with running_cluster(2):

        async def scenario(reaper: Reaper) -> None:
            async with start_kernel(spec=_spec(kernel_name), startup_timeout=30) as (m, client):
                reaper.track_manager(m)
                await ok(client, "%load_ext parallel")
                await _interrupt_sleep(m, client)
                # the engines were interrupted too: they answer at once, not in 60 s
                assert outs(await ok(client, "%px 'free'", timeout=20)) == {
                    0: "'free'",
                    1: "'free'",
                }

        run(scenario, timeout=180)


async def _interrupt_sleep(manager: KernelManager, client: KernelClient) -> None:
    progress = Cell()
    both_started = asyncio.get_running_loop().create_future()

    def seen(message: Message) -> None:
        progress.add(message)
        started = all(f"[stdout:{e}] started" in progress.stdout for e in (0, 1))
        if started and not both_started.done():
            both_started.set_result(None)

    code = "%px print('started', flush=True); import time; time.sleep(60)"
    running = asyncio.ensure_future(client.execute(code, on_output=seen, timeout=TIMEOUT))
    async with asyncio.timeout(TIMEOUT):
        await both_started
    assert not running.done()
    await manager.interrupt(client)
    async with asyncio.timeout(20):
        reply = await running
    assert reply.content["status"] == "error"
    assert reply.content["ename"] == "KeyboardInterrupt"
    assert "Interrupted: sent SIGINT to engines 0, 1" in progress.stderr


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_cluster_magic_starts_and_stops_a_cluster_owned_by_the_kernel(kernel_name: str) -> None:
    pids: list[int] = []  # every controller and engine the kernel started, killed after

    async def scenario(reaper: Reaper) -> None:
        async with start_kernel(spec=_spec(kernel_name), startup_timeout=30) as (m, client):
            reaper.track_manager(m)
            await ok(client, "%load_ext parallel")
            none = await cell(client, "%px 1")
            assert none.ename == "UsageError"
            assert "no cluster is running" in none.everything
            assert "%cluster start -n 4" in none.everything
            first = await _start_cluster(client, 2, pids)
            assert "cluster stopped" in (await ok(client, "%cluster stop")).stdout
            for pid in first:
                assert wait_gone(pid, 20), f"process {pid} outlived %cluster stop"
            assert "no cluster is running" in (await cell(client, "%px 1")).everything
            second = await _start_cluster(client, 1, pids)
        for pid in second:  # the kernel shut down: its cluster stops with it
            assert wait_gone(pid, 30), f"process {pid} outlived its kernel"

    try:
        run(scenario, timeout=240)
    finally:
        for pid in pids:
            if not is_gone(pid):
                os.kill(pid, signal.SIGKILL)


async def _start_cluster(client: KernelClient, n: int, pids: list[int]) -> list[int]:
    """``%cluster start -n N``; the controller's and the engines' pids (also added to ``pids``)."""
    started = await ok(client, f"%cluster start -n {n}", timeout=90)
    assert f"Cluster started with {n} engines" in started.stdout
    listed = await ok(client, "%cluster list")
    assert f"{n} engines" in listed.stdout
    controller = re.findall(r"controller pid (\d+)", listed.stdout)
    engines = outs(await ok(client, "%px import os; os.getpid()"))
    assert len(controller) == 1
    assert sorted(engines) == list(range(n))
    found = [int(controller[0]), *(int(pid) for pid in engines.values())]
    pids.extend(found)
    return found


def test_an_engine_that_dies_during_px_is_reported_lost() -> None:
    with running_cluster(2) as (_, rc):
        victim = rc._records[1].pid

        async def scenario(reaper: Reaper) -> None:
            async with start_kernel(spec=builtin_loom_spec(), startup_timeout=30) as (m, client):
                reaper.track_manager(m)
                await ok(client, "%load_ext parallel")
                started = asyncio.get_running_loop().create_future()
                seen = Cell()

                def on_output(message: Message) -> None:
                    seen.add(message)
                    if "[stdout:1] started" in seen.stdout and not started.done():
                        started.set_result(None)

                code = "%px -t 1 print('started', flush=True); import time; time.sleep(60)"
                running = asyncio.ensure_future(
                    client.execute(code, on_output=on_output, timeout=TIMEOUT)
                )
                async with asyncio.timeout(TIMEOUT):
                    await started
                os.kill(victim, signal.SIGKILL)
                async with asyncio.timeout(30):
                    reply = await running
                assert reply.content["status"] == "error"
                assert reply.content["ename"] == "PxError"
                assert "engine 1 lost" in seen.everything
                assert outs(await ok(client, "%px -t 0 'alive'")) == {0: "'alive'"}

        run(scenario, timeout=120)
