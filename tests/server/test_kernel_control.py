"""End to end: what keeps working while a cell blocks the Loom kernel's main thread.

Control requests, interrupts, shutdown, the heartbeat and timely output are
served by the kernel's helper threads; stdin round trips and the thread census
complete the picture (docs/architecture.md, "Kernel: user code on the main thread").
"""

# Scenarios read /proc inline: these calls return at once.
# ruff: noqa: ASYNC240

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from _kernel_e2e import (
    Kernel,
    assert_bracketed,
    hb_ping,
    isolate_kernel_env,
    loom_kernel,
    stream_text,
)
from _support import Reaper, run

from kernel import KernelDied
from kernel.protocol import Message

TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def _kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_kernel_env(monkeypatch, tmp_path)


def start_cell(k: Kernel, code: str, **kw: object) -> asyncio.Task[Message]:
    return asyncio.ensure_future(
        k.client.execute(code, on_output=k.log.add, timeout=90, **kw)  # type: ignore[arg-type]
    )


async def cell_started(k: Kernel, code: str) -> None:
    """Wait for the ``execute_input`` of ``code``: the kernel is now running it."""
    await k.log.wait_for(
        lambda m: m.msg_type == "execute_input" and m.content["code"] == code, TIMEOUT
    )


async def still_works(k: Kernel) -> None:
    reply = await k.client.execute("6 * 7", on_output=k.log.add, timeout=TIMEOUT)
    assert reply.content["status"] == "ok"
    outputs = assert_bracketed(k.log, reply)
    assert outputs[-1].content["data"]["text/plain"] == "42"


def interrupted(reply: Message) -> bool:
    return reply.content["status"] == "error" and reply.content["ename"] == "KeyboardInterrupt"


# -- control while busy, interrupts -------------------------------------------------


def test_control_answers_while_a_cell_blocks_and_interrupt_request_stops_it() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            code = "import time\ntime.sleep(10)"
            task = start_cell(k, code)
            await cell_started(k, code)
            started = time.monotonic()
            info = await k.client.kernel_info_request(channel="control", timeout=1.0)
            assert info["status"] == "ok"
            assert not task.done()

            # interrupt_request ends the blocking cell (it would run on for seconds)
            await k.client.interrupt(timeout=TIMEOUT)
            async with asyncio.timeout(5):
                assert interrupted(await task)
            assert time.monotonic() - started < 5
            code = "import time\ntime.sleep(60)"
            task = start_cell(k, code)
            await cell_started(k, code)
            assert (await k.client.interrupt(timeout=TIMEOUT))["status"] == "ok"
            async with asyncio.timeout(5):
                reply = await task
            assert interrupted(reply)
            assert_bracketed(k.log, reply)
            await still_works(k)

    run(scenario)


def test_sigint_interrupts_a_busy_loop_and_is_harmless_while_idle() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            code = "while True: pass"
            task = start_cell(k, code)
            await cell_started(k, code)
            os.kill(k.pid, signal.SIGINT)
            async with asyncio.timeout(5):
                assert interrupted(await task)
            await still_works(k)

            for _ in range(3):
                os.kill(k.pid, signal.SIGINT)  # idle: must be ignored, never kill the kernel
                assert (await k.client.kernel_info_request(timeout=TIMEOUT))["status"] == "ok"
                await still_works(k)
            assert k.manager.is_alive()

    run(scenario)


def test_interrupting_a_top_level_await_cell() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            for how in ("signal", "message"):
                code = f"import asyncio\nawait asyncio.sleep(60)  # {how}"
                task = start_cell(k, code)
                await cell_started(k, code)
                if how == "signal":
                    os.kill(k.pid, signal.SIGINT)
                else:
                    await k.client.interrupt(timeout=TIMEOUT)
                async with asyncio.timeout(5):
                    reply = await task
                assert interrupted(reply), reply.content
                await still_works(k)

    run(scenario)


def test_shutdown_request_while_a_cell_blocks() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            code = "import time\ntime.sleep(60)"
            task = start_cell(k, code)
            await cell_started(k, code)
            started = time.monotonic()
            reply = await k.client.request(
                "shutdown_request",
                {"restart": False},
                channel="control",
                on_output=k.log.add,
                wait_for_idle=False,
                timeout=TIMEOUT,
            )
            assert reply.msg_type == "shutdown_reply"
            assert reply.content == {"status": "ok", "restart": False}
            broadcast = await k.log.wait_for(
                lambda m: m.msg_type == "shutdown_reply" and m.parent_id == reply.parent_id,
                TIMEOUT,
            )
            assert broadcast.content == reply.content
            async with asyncio.timeout(5):
                assert await k.manager.wait_exit() == 0
            assert time.monotonic() - started < 5
            async with asyncio.timeout(TIMEOUT):
                # the blocked cell was interrupted (or the client gave up on it)
                with contextlib.suppress(KernelDied):
                    assert interrupted(await task)

    run(scenario)


# -- heartbeat ----------------------------------------------------------------------


def test_heartbeat_answers_while_the_main_thread_sleeps_or_holds_the_gil() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            changes: list[bool] = []
            k.client.on_heartbeat = changes.append
            # Each cell blocks for twice the time after which the client's monitor calls a
            # silent kernel unresponsive. time.sleep releases the GIL; libc's sleep called
            # through ctypes.PyDLL keeps it (PyDLL never releases the GIL), as a long C
            # call does, without burning a core for it.
            hold = round(2 * k.client.heartbeat.grace)
            for code in (
                f"import time\ntime.sleep({hold})",
                f"import ctypes\nctypes.PyDLL(None).sleep({hold})",
            ):
                task = start_cell(k, code)
                await cell_started(k, code)
                await hb_ping(k.info)
                reply = await task
                assert reply.content["status"] == "ok"
            assert changes == []
            assert k.client.heartbeat.responsive

    run(scenario)


# -- output timing and captured file descriptors -------------------------------------


def test_output_before_a_long_call_arrives_at_once() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            arrivals: list[tuple[float, Message]] = []

            def record(message: Message) -> None:
                arrivals.append((time.monotonic(), message))

            reply = await k.client.execute(
                "import time\nprint('before', flush=False)\ntime.sleep(3)\nprint('after')",
                on_output=record,
                timeout=TIMEOUT,
            )
            replied = time.monotonic()
            assert reply.content["status"] == "ok"
            # print() writes text and newline separately: a loaded kernel may send two
            # stream messages, but both long before the cell ends
            early = [m for t, m in arrivals if m.msg_type == "stream" and replied - t > 2]
            assert "".join(m.content["text"] for m in early) == "before\n"

    run(scenario)


THREADED_FLOOD = """
import sys, threading
sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
def flood(tag, stream):
    for i in range(30000):
        stream.write(f"{tag}:{i}\\n")
threads = [threading.Thread(target=flood, args=(t, sys.stdout)) for t in "abc"]
threads.append(threading.Thread(target=flood, args=("e", sys.stderr)))
for t in threads: t.start()
flood("m", sys.stdout)
for t in threads: t.join()
sys.setswitchinterval(0.005)
"""


def test_threads_writing_at_once_lose_and_reorder_nothing() -> None:
    # Writers append to the stream buffers without a lock while seals drain them
    # (by size, on the I/O thread's timer): every line must arrive exactly once, and
    # each writer's lines in the order it wrote them.
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            texts: dict[str, list[str]] = {"stdout": [], "stderr": []}

            def record(message: Message) -> None:
                if message.msg_type == "stream":
                    texts[message.content["name"]].append(message.content["text"])

            reply = await k.client.execute(THREADED_FLOOD, on_output=record, timeout=60)
            assert reply.content["status"] == "ok"
            for name, tags in (("stdout", "abcm"), ("stderr", "e")):
                lines = "".join(texts[name]).splitlines()
                assert len(lines) == 30000 * len(tags)
                for tag in tags:
                    mine = [line for line in lines if line.startswith(tag + ":")]
                    assert mine == [f"{tag}:{i}" for i in range(30000)]
            assert len(texts["stdout"]) > 4  # sealed in many pieces, not one

    run(scenario)


def test_fd_level_and_child_process_output_is_captured() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            cells = {
                "import os\nos.write(1, b'fd-out\\n')": ("stdout", "fd-out\n"),
                "import os\nos.write(2, b'fd-err\\n')": ("stderr", "fd-err\n"),
                "import subprocess\nsubprocess.run(['echo', 'child'])": ("stdout", "child\n"),
                "import subprocess\nsubprocess.run(['sh', '-c', 'echo child-err >&2'])": (
                    "stderr",
                    "child-err\n",
                ),
                "import sys, subprocess\n"
                "subprocess.run([sys.executable, '-c', 'print(\"py-child\")'])": (
                    "stdout",
                    "py-child\n",
                ),
            }
            for _ in range(5):  # the output must belong to its cell every time
                for code, (name, text) in cells.items():
                    reply = await k.client.execute(code + ";", on_output=k.log.add, timeout=TIMEOUT)
                    assert reply.content["status"] == "ok"
                    outputs = assert_bracketed(k.log, reply)
                    assert stream_text(outputs, name) == text, (code, outputs)
            assert not [m for m in k.log.messages if m.parent_id is None]

    run(scenario)


def test_fd_level_output_comes_before_the_result_and_the_error() -> None:
    """Issue 15 item 14: C-level output used to follow ``Out[N]`` (the I/O thread had
    not read it yet when the result was published)."""
    cells = {
        "import os\nos.write(1, b'fd-out\\n'); 43": ("stdout", "fd-out\n", "execute_result"),
        "import ctypes\nctypes.CDLL(None).puts(b'from-c'); 44": (
            "stdout",
            "from-c\n",
            "execute_result",
        ),
        "import os\nos.write(2, b'fd-err\\n'); 1 / 0": ("stderr", "fd-err\n", "error"),
    }

    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            for _ in range(10):  # a race before: it must hold every time
                for code, (name, text, last) in cells.items():
                    reply = await k.client.execute(code, on_output=k.log.add, timeout=TIMEOUT)
                    outputs = assert_bracketed(k.log, reply)
                    kinds = [m.msg_type for m in outputs]
                    assert kinds[-1] == last, (code, kinds)
                    assert stream_text(outputs, name) == text, (code, outputs)

    run(scenario)


# -- stdin ----------------------------------------------------------------------------


def test_input_and_getpass_round_trips() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            asked: list[tuple[str, bool]] = []

            async def answer(prompt: str, password: bool) -> str:
                asked.append((prompt, password))
                return "secret" if password else "Ada"

            reply = await k.client.execute(
                "import getpass\nname = input('name? ')\npw = getpass.getpass('pw: ')\n(name, pw)",
                on_input=answer,
                on_output=k.log.add,
                timeout=TIMEOUT,
            )
            assert reply.content["status"] == "ok"
            assert asked == [("name? ", False), ("pw: ", True)]
            outputs = assert_bracketed(k.log, reply)
            assert outputs[-1].content["data"]["text/plain"] == "('Ada', 'secret')"

            for code in ("input('x')", "import getpass; getpass.getpass()"):
                reply = await k.client.execute(code, allow_stdin=False, timeout=TIMEOUT)
                assert reply.content["status"] == "error"
                assert reply.content["ename"] == "StdinNotImplementedError"

    run(scenario)


def test_interrupt_while_waiting_for_input() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            release = asyncio.Event()

            async def stall(prompt: str, password: bool) -> str:
                await release.wait()
                return "too late"

            code = "value = input('waiting: ')"
            task = start_cell(k, code, on_input=stall)
            await cell_started(k, code)
            await k.client.interrupt(timeout=TIMEOUT)
            async with asyncio.timeout(5):
                reply = await task
            assert interrupted(reply)
            release.set()  # the abandoned answer now reaches the kernel late

            async def answer(prompt: str, password: bool) -> str:
                return "fresh"

            reply = await k.client.execute(
                "input('again: ')", on_input=answer, on_output=k.log.add, timeout=TIMEOUT
            )
            assert reply.content["status"] == "ok"
            outputs = assert_bracketed(k.log, reply)
            assert outputs[-1].content["data"]["text/plain"] == "'fresh'"
            await still_works(k)

    run(scenario)


# -- threads ----------------------------------------------------------------------------


def test_the_idle_kernel_runs_only_the_documented_threads() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            reply = await k.client.execute(
                "import threading\nsorted((t.name, t.native_id) for t in threading.enumerate())",
                on_output=k.log.add,
                timeout=TIMEOUT,
            )
            outputs = assert_bracketed(k.log, reply)
            python_threads = dict(eval(outputs[-1].content["data"]["text/plain"]))
            assert sorted(python_threads) == ["MainThread", "loom-heartbeat", "loom-io"]
            tasks = Path(f"/proc/{k.pid}/task")
            comm = {int(t.name): (t / "comm").read_text().strip() for t in tasks.iterdir()}
            # each Python thread is one OS thread; all others are libzmq's
            assert set(python_threads.values()) <= set(comm)
            others = {tid: name for tid, name in comm.items() if tid not in python_threads.values()}
            assert others, comm
            assert all(name.startswith("ZMQbg/") for name in others.values()), comm
            assert len(comm) - len(others) <= 3
            assert python_threads["MainThread"] == k.pid

    run(scenario)
