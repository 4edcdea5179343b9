"""Every shell reply counts the iopub messages its request published (metadata ``outputs``).

A client that reads the count knows it has every output of a request once the reply and
that many outputs are in, without waiting for ``idle``; an engine's pool client relies on
it (engines publish no ``busy``/``idle`` for ``apply_request``). So the count must equal,
exactly, the outputs a subscriber sees between ``busy`` and ``idle``: Python's and C
code's stream text, results, errors, displays.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _kernel_e2e import assert_bracketed, isolate_kernel_env, loom_kernel
from _support import Reaper, run

TIMEOUT = 20.0

CELLS = [
    "pass",
    "print('one')",
    "6 * 7",
    "import os; os.write(1, b'from the fd\\n'); print('and python')",
    "import os; os.write(2, b'only C-level output\\n')",  # nothing buffered in Python
    "for i in range(50_000): print(i)",  # many stream messages (size- and time-sealed)
    "from IPython.display import display\ndisplay('a'); display('b'); 1",
    "1 / 0",
]


@pytest.fixture(autouse=True)
def _kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_kernel_env(monkeypatch, tmp_path)


def test_each_reply_counts_exactly_the_outputs_published_for_it() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            for code in CELLS:
                reply = await k.client.execute(code, on_output=k.log.add, timeout=TIMEOUT)
                outputs = assert_bracketed(k.log, reply)
                assert reply.metadata["outputs"] == len(outputs), code
                assert len(outputs) >= 1  # execute_input at least: the count is not just 0

    run(scenario, timeout=120)
