"""An interrupted ``%%script`` cell ends as IPython 9's does, on a real Loom kernel.

IPython stops the program, prints ``Process was interrupted.`` and raises
``CalledProcessError`` with the signal (nothing raised with ``--no-raise-error``). Loom's
kernel gave a ``KeyboardInterrupt`` whose traceback ran through ``subprocess``'s internals.
An interrupted ``!cmd`` stops the cell with a ``KeyboardInterrupt`` at the user's line.
The test waits for the script's first line of output before it sends the interrupt.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from _kernel_e2e import isolate_kernel_env, loom_kernel
from _support import Reaper, run

TIMEOUT = 20.0
BODY = "echo started\nsleep 30\n"


@pytest.fixture(autouse=True)
def _kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_kernel_env(monkeypatch, tmp_path)


def test_an_interrupted_script_says_so_and_is_an_error_as_in_ipython() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:

            async def interrupted(code: str) -> tuple[Any, str]:
                started = asyncio.Event()
                text: list[str] = []

                def keep(message: Any) -> None:
                    if message.msg_type == "stream":
                        text.append(message.content["text"])
                        if "started" in "".join(text):
                            started.set()

                cell = asyncio.ensure_future(k.client.execute(code, on_output=keep))
                async with asyncio.timeout(TIMEOUT):
                    await started.wait()
                await k.client.interrupt(timeout=TIMEOUT)
                async with asyncio.timeout(TIMEOUT):  # not the script's 30 s
                    reply = await cell
                return reply, "".join(text)

            reply, text = await interrupted(f"%%script sh\n{BODY}")
            assert text == "started\nProcess was interrupted.\n"
            assert (reply.content["ename"], reply.content["evalue"]) == (
                "CalledProcessError",
                f"Command '{BODY.encode()!r}' died with <Signals.SIGINT: 2>.",
            )
            reply, text = await interrupted(f"%%bash --no-raise-error\n{BODY}")
            assert reply.content["status"] == "ok"
            assert text == "started\nProcess was interrupted.\n"
            # `!cmd` stops the cell (IPython's goes on after '^C'); its traceback is the
            # user's line, not subprocess's internals.
            reply, text = await interrupted("!echo started; sleep 30")
            assert reply.content["ename"] == "KeyboardInterrupt"
            assert "subprocess" not in "".join(reply.content["traceback"])

    run(scenario, timeout=90)
