"""End to end: an async magic drives a client from inside a Loom kernel's cell.

This is what ``%px`` needs: while the magic awaits another kernel, the kernel's own loop
runs the client's sockets, control keeps answering, and ``interrupt_request`` cancels
the awaiting cell with ``KeyboardInterrupt``.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from _kernel_e2e import isolate_kernel_env, loom_kernel
from _support import Reaper, run

from kernel.protocol import Message

TIMEOUT = 20.0

EXTENSION = """
from kernel import connect_client
from kernel.protocol import ConnectionInfo

async def remote(args):
    path, _, code = args.partition(" ")
    async with connect_client(ConnectionInfo.read(path)) as client:
        reply = await client.execute(code, timeout=120)
    return reply.content["status"]

def load_loom_extension(magics):
    magics.register_line("remote", remote, is_async=True, expand=False)
"""


@pytest.fixture(autouse=True)
def _kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_kernel_env(monkeypatch, tmp_path)


def _result(messages: list[Message]) -> str:
    results = [m.content["data"]["text/plain"] for m in messages if m.msg_type == "execute_result"]
    assert len(results) == 1, messages
    return str(results[0])


def test_an_async_magic_runs_code_on_another_kernel_and_interrupt_cancels_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "remote_ext.py").write_text(textwrap.dedent(EXTENSION))
    other_file = tmp_path / "other.json"

    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as here, loom_kernel(reaper) as other:
            other.info.write(other_file)
            setup = f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n%load_ext remote_ext"
            assert (await here.client.execute(setup, timeout=TIMEOUT)).content["status"] == "ok"

            out: list[Message] = []
            reply = await here.client.execute(
                f"%remote {other_file} answer = 6 * 7", on_output=out.append, timeout=TIMEOUT
            )
            assert reply.content["status"] == "ok"
            assert _result(out) == "'ok'"
            there: list[Message] = []
            check = await other.client.execute("answer", on_output=there.append, timeout=TIMEOUT)
            assert check.content["status"] == "ok"
            assert _result(there) == "42"

            started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def seen(message: Message) -> None:
                if message.msg_type == "execute_input" and not started.done():
                    started.set_result(None)

            cell = asyncio.ensure_future(
                here.client.execute(
                    f"%remote {other_file} import time; time.sleep(60)",
                    on_output=seen,
                    timeout=TIMEOUT,
                )
            )
            async with asyncio.timeout(TIMEOUT):
                await started
            info = await here.client.kernel_info_request(channel="control", timeout=5)
            assert info["status"] == "ok"
            assert not cell.done()
            await here.client.interrupt(timeout=TIMEOUT)
            async with asyncio.timeout(10):
                interrupted = await cell
            assert interrupted.content["status"] == "error"
            assert interrupted.content["ename"] == "KeyboardInterrupt"
            after = await here.client.execute("1 + 1", timeout=TIMEOUT)
            assert after.content["status"] == "ok"

    run(scenario, timeout=120)
