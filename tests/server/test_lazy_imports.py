"""A running Loom kernel imports IPython, matplotlib and traitlets only when user code does.

``tests/test_layers.py`` checks the modules behind an ``Interpreter`` in-process; this is
the real thing: a kernel process, started as front ends start it, asked what every front end
asks early (kernel_info, a completion, an inspection, history, a cell that displays with
the built-in ``display``, a magic, an error), then asked for its ``sys.modules``. IPython costs
about a third of a second to import (issue 14's benchmark promise), so it must not come
with any of that. Then ``import IPython.display`` brings it, and ``display`` still works.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _kernel_e2e import isolate_kernel_env, loom_kernel
from _support import Reaper, run

TIMEOUT = 20.0
HEAVY = ("IPython", "matplotlib", "traitlets", "ipykernel", "pdb")
ASK = (
    "import json, sys\n"
    f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
)


@pytest.fixture(autouse=True)
def _kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_kernel_env(monkeypatch, tmp_path)
    monkeypatch.delenv("MPLBACKEND", raising=False)


def test_a_fresh_kernel_has_not_imported_ipython_until_user_code_does() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            client = k.client
            await client.kernel_info_request(timeout=TIMEOUT)
            await client.complete("import o", timeout=TIMEOUT)
            await client.inspect("len", detail_level=1, timeout=TIMEOUT)
            await client.is_complete("for x in y:", timeout=TIMEOUT)
            for code in ("display({'a': 1})", "%time 6 * 7", "1 / 0", "x = 1"):
                await client.execute(code, timeout=TIMEOUT)
            await client.history("tail", n=10, output=True, timeout=TIMEOUT)

            async def loaded() -> list[str]:
                text: list[str] = []

                def keep(message: object) -> None:
                    content = getattr(message, "content", {})
                    if getattr(message, "msg_type", "") == "stream":
                        text.append(content["text"])

                reply = await client.execute(ASK, on_output=keep, timeout=TIMEOUT)
                assert reply.content["status"] == "ok"
                found: list[str] = json.loads("".join(text))
                return found

            assert await loaded() == []
            await client.execute("from IPython.display import display, Markdown", timeout=TIMEOUT)
            assert "IPython" in await loaded()

    run(scenario, timeout=90)
