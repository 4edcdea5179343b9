"""The debugger over stdin at the kernel: ``%debug``, ``%pdb on``, ``breakpoint()``.

A real kernel, a real client; pdb asks for every command with ``input_request`` and the
test answers from a script. On Loom's kernel each pdb question also carries the paused
frame's names (the console's Tab completion); the kernel's own frames are not the
user's; ``q``, Ctrl-C (``interrupt_request``) and a front end without stdin all leave a
usable kernel. ``%debug`` and ``%pdb`` are checked on ipykernel too (the same script
works there); ``breakpoint()`` on ipykernel goes to debugpy, not to stdin.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from _support import Reaper, run

from kernel import KernelClient, start_kernel
from kernel.client._input_request import current_input_request
from kernel.protocol import Message

pytestmark = pytest.mark.peer

KERNELS = ["loom", "python3"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
FAILING = "def f(y):\n    zz_local = y * 2\n    1/0\n\nf(21)"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("LOOM_HISTORY_FILE", str(tmp_path / "history.sqlite"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("PYTHONBREAKPOINT", raising=False)


class Session:
    """Runs cells, answering pdb from a list of commands; records what was asked."""

    def __init__(self, client: KernelClient) -> None:
        self.client = client
        self.prompts: list[str] = []
        self.requests: list[Message] = []

    async def run(
        self, code: str, answers: list[str], *, allow_stdin: bool | None = None
    ) -> tuple[Message, str]:
        pending = list(answers)
        text: list[str] = []

        async def answer(prompt: str, password: bool) -> str:
            self.prompts.append(prompt)
            request = current_input_request.get()
            assert request is not None
            self.requests.append(request)
            assert pending, f"pdb asked once more than scripted, after: {''.join(text)!r}"
            return pending.pop(0)

        def output(message: Message) -> None:
            if message.msg_type == "stream":
                text.append(str(message.content["text"]))
            elif message.msg_type == "error":
                text.append("\n".join(message.content["traceback"]))

        async with asyncio.timeout(30):
            reply = await self.client.execute(
                code, on_input=answer, on_output=output, allow_stdin=allow_stdin
            )
        assert not pending, f"unused answers {pending}; output: {''.join(text)!r}"
        return reply, ANSI.sub("", "".join(text))


@pytest.mark.parametrize("kernel", KERNELS)
def test_debug_is_post_mortem_on_the_last_error(kernel: str) -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel(kernel) as (manager, client):
            reaper.track_manager(manager)
            s = Session(client)
            reply, _ = await s.run(FAILING, [])
            assert reply.content["ename"] == "ZeroDivisionError"
            reply, out = await s.run("%debug", ["p zz_local", "up", "p zz_local", "q"])
            assert reply.content["status"] == "ok"
            assert "42" in out
            assert "NameError" in out  # `up` moved to the cell's frame, where zz_local is not
            assert all(p.strip() in ("(Pdb)", "ipdb>") for p in s.prompts), s.prompts
            reply, out = await s.run("print('after', 6 * 7)", [])
            assert "after 42" in out

    run(scenario, timeout=120)


def test_debug_sends_the_frames_names_and_hides_the_kernels_frames() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel("loom") as (manager, client):
            reaper.track_manager(manager)
            s = Session(client)
            await s.run(FAILING, [])
            _, out = await s.run("%debug", ["where", "up", "up", "q"])
            # The stack is the user's: the cell, then f. No kernel file, no asyncio.
            assert "<cell-1>(5)<module>()" in out, out
            assert "<cell-1>(3)f()" in out, out
            assert "kernel/server" not in out, out
            assert "asyncio" not in out, out
            assert "*** Oldest frame" in out, out
            names = s.requests[0].metadata["loom_debugger"]
            assert "zz_local" in names["names"]
            assert "y" in names["names"]
            assert "f" in names["names"]
            assert "print" in names["names"]
            assert not [n for n in names["names"] if n.startswith("_loom")]
            assert {"p", "up", "where", "continue"} <= set(names["commands"])
            after_up = s.requests[2].metadata["loom_debugger"]["names"]
            assert "zz_local" not in after_up  # the names follow the current frame

    run(scenario, timeout=120)


def test_debug_without_an_error_and_with_a_statement() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel("loom") as (manager, client):
            reaper.track_manager(manager)
            s = Session(client)
            _, out = await s.run("%debug", [])
            assert "No traceback has been produced, nothing to debug." in out
            _, out = await s.run("zz_a = 5\n%debug zz_b = zz_a * 2", ["n", "p zz_b", "c"])
            assert "10" in out
            reply, _ = await s.run("zz_b", [])
            assert reply.content["status"] == "ok"
            # %%debug: the cell under pdb, stopped at its first line (line 2 of the cell).
            _, out = await s.run("%%debug\nzz_d = 3\nzz_d += 1", ["n", "p zz_d", "c"])
            assert "<cell-4>(2)<module>()" in out, out
            assert "3\n" in out, out
            reply, _ = await s.run("%pdb maybe", [])
            assert (reply.content["ename"], reply.content["traceback"]) == (
                "UsageError",
                ["UsageError: %pdb: expected on or off, not 'maybe'"],
            )

    run(scenario, timeout=120)


@pytest.mark.parametrize("kernel", KERNELS)
def test_pdb_on_debugs_each_error_after_its_traceback(kernel: str) -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel(kernel) as (manager, client):
            reaper.track_manager(manager)
            s = Session(client)
            _, out = await s.run("%pdb on", [])
            assert "Automatic pdb calling has been turned ON" in out
            reply, out = await s.run("zz_v = 7\nzz_v / 0", ["p zz_v * 6", "q"])
            assert reply.content["ename"] == "ZeroDivisionError"
            assert out.index("ZeroDivisionError") < out.index("42"), out
            _, out = await s.run("%pdb off", [])
            assert "turned OFF" in out
            reply, _ = await s.run("1/0", [])  # no question: pdb is off again
            assert reply.content["ename"] == "ZeroDivisionError"

    run(scenario, timeout=120)


def test_breakpoint_stops_in_the_cell_and_continues() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel("loom") as (manager, client):
            reaper.track_manager(manager)
            s = Session(client)
            code = "zz_a = 1\nbreakpoint()\nzz_a += 41\nprint('after', zz_a)"
            reply, out = await s.run(code, ["p zz_a", "n", "p zz_a", "c"])
            assert reply.content["status"] == "ok"
            assert "<cell-1>(3)<module>()" in out
            assert "1\n" in out
            assert "42\n" in out
            assert "after 42" in out
            # q ends the cell without a traceback, as in IPython; the kernel goes on.
            reply, out = await s.run("breakpoint()\nprint('never')", ["q"])
            assert (reply.content["status"], reply.content["ename"]) == ("error", "BdbQuit")
            assert "never" not in out.splitlines()  # (its source line is shown, not run)
            assert "Traceback" not in out
            # Stepping off the end of the cell ends the session, never in the kernel's code.
            reply, out = await s.run("breakpoint()\nzz_c = 3", ["n", "n"])
            assert reply.content["status"] == "ok", out
            assert "--Return--" in out, out  # the last stop: the cell's end
            assert "kernel/server" not in out
            reply, out = await s.run("print('alive', zz_c)", [])
            assert "alive 3" in out

    run(scenario, timeout=120)


def test_ctrl_c_at_the_pdb_prompt_asks_again_and_q_leaves_a_usable_kernel() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel("loom") as (manager, client):
            reaper.track_manager(manager)
            s = Session(client)
            await s.run(FAILING, [])
            asked = 0
            text: list[str] = []

            async def interrupt_first(prompt: str, password: bool) -> str | None:
                nonlocal asked
                asked += 1
                if asked == 1:
                    await client.interrupt()
                    return None  # no answer: the interrupt ends this question
                return "p zz_local" if asked == 2 else "q"

            def output(message: Message) -> None:
                if message.msg_type == "stream":
                    text.append(str(message.content["text"]))

            async with asyncio.timeout(30):
                reply = await client.execute("%debug", on_input=interrupt_first, on_output=output)
            assert reply.content["status"] == "ok"
            out = "".join(text)
            assert "--KeyboardInterrupt--" in out, out
            assert "42" in out, out
            reply, out = await s.run("print('alive')", [])
            assert "alive" in out

    run(scenario, timeout=120)


def test_without_stdin_the_debugger_says_so_and_the_cell_goes_on() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel("loom") as (manager, client):
            reaper.track_manager(manager)
            s = Session(client)
            reply, out = await s.run("breakpoint()\nprint('went on')", [], allow_stdin=False)
            assert reply.content["status"] == "ok"
            assert "allow_stdin" in out
            assert "went on" in out
            await s.run("1/0", [], allow_stdin=False)
            reply, out = await s.run("%debug", [], allow_stdin=False)
            assert reply.content["status"] == "ok"
            assert "allow_stdin" in out

    run(scenario, timeout=120)


def test_stock_pdb_set_trace_works_and_leaves_interrupts_to_the_kernel() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with start_kernel("loom") as (manager, client):
            reaper.track_manager(manager)
            s = Session(client)
            reply, out = await s.run("import pdb; pdb.set_trace()\nzz_s = 2", ["p 6 * 7", "c"])
            assert reply.content["status"] == "ok"
            assert "42" in out
            # pdb's `c` installed pdb's own SIGINT handler; the next cell's interrupt must
            # still be a KeyboardInterrupt in that cell, not a stop in pdb.
            started = asyncio.Event()

            def output(message: Message) -> None:
                if "sleeping" in str(message.content.get("text", "")):
                    started.set()

            cell = asyncio.ensure_future(
                client.execute("import time\nprint('sleeping')\ntime.sleep(30)", on_output=output)
            )
            async with asyncio.timeout(20):
                await started.wait()
                await client.interrupt()
                reply = await cell
            assert reply.content["ename"] == "KeyboardInterrupt"

    run(scenario, timeout=120)
