"""A request whose metadata says ``loom_unannounced: true`` gets no ``busy``/``idle``.

The engine pool's client asks for it on every request (it finishes a request by the
reply's ``outputs`` count); every other request is announced as the messaging spec says,
so a Jupyter client that never sends the key sees no difference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _kernel_e2e import assert_bracketed, isolate_kernel_env, loom_kernel
from _support import Reaper, run

from kernel.protocol._message import UNANNOUNCED

TIMEOUT = 20.0


@pytest.fixture(autouse=True)
def _kernel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_kernel_env(monkeypatch, tmp_path)


def _content(code: str) -> dict[str, object]:
    return {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }


def test_only_requests_that_ask_go_unannounced() -> None:
    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            quiet = await k.client.request(
                "execute_request",
                _content("print('seen'); 6 * 7"),
                metadata={UNANNOUNCED: True},
                on_output=k.log.add,
                wait_for_idle=False,
                timeout=TIMEOUT,
            )
            assert quiet.content["status"] == "ok"
            # Not true, but truthy: announced (only the exact flag is the extension).
            truthy = await k.client.request(
                "execute_request",
                _content("1"),
                metadata={UNANNOUNCED: "yes"},
                on_output=k.log.add,
                timeout=TIMEOUT,
            )
            # iopub is ordered: once this request's idle is in, so is anything the quiet
            # one published.
            plain = await k.client.execute("2", on_output=k.log.add, timeout=TIMEOUT)
            seen = k.log.for_parent(quiet.parent_id or "")
            assert [m.msg_type for m in seen] == ["execute_input", "stream", "execute_result"]
            assert quiet.metadata["outputs"] == len(seen)
            assert assert_bracketed(k.log, truthy)
            assert assert_bracketed(k.log, plain)

    run(scenario, timeout=120)
