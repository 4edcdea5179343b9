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

from kernel.protocol._message import NO_EXECUTE_INPUT, UNANNOUNCED

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
            kinds = [m.msg_type for m in seen]
            # No status at all; the print is one stream message or more (a loaded machine
            # may flush "seen" before its newline: stream output may be split).
            assert kinds[0] == "execute_input", kinds
            assert kinds[-1] == "execute_result", kinds
            assert set(kinds[1:-1]) == {"stream"}, kinds
            text = "".join(m.content["text"] for m in seen if m.msg_type == "stream")
            assert text == "seen\n"
            # The point of the count: the client finishes a quiet request when it has read
            # this many messages for it, however many the print became.
            assert quiet.metadata["outputs"] == len(seen)
            assert assert_bracketed(k.log, truthy)
            assert assert_bracketed(k.log, plain)

    run(scenario, timeout=120)


def test_a_request_may_ask_for_no_execute_input() -> None:
    """``%px`` asks engines for no ``execute_input`` echo; the cell is otherwise the same:
    numbered, in the history, its value shown with its number."""

    async def scenario(reaper: Reaper) -> None:
        async with loom_kernel(reaper) as k:
            first = await k.client.execute("1", on_output=k.log.add, timeout=TIMEOUT)
            quiet = await k.client.request(
                "execute_request",
                _content("print('seen'); 6 * 7"),
                metadata={NO_EXECUTE_INPUT: True},
                on_output=k.log.add,
                timeout=TIMEOUT,
            )
            after = await k.client.execute("In[-2], _", on_output=k.log.add, timeout=TIMEOUT)
            seen = k.log.for_parent(quiet.parent_id or "")
            kinds = [m.msg_type for m in seen if m.msg_type not in ("status", "stream")]
            assert kinds == ["execute_result"]  # no execute_input
            text = "".join(m.content["text"] for m in seen if m.msg_type == "stream")
            assert text == "seen\n"  # (one or more stream messages: a loaded machine splits)
            count = first.content["execution_count"] + 1
            assert quiet.content["execution_count"] == count
            (result,) = [m for m in seen if m.msg_type == "execute_result"]
            assert result.content["execution_count"] == count
            (value,) = [
                m for m in k.log.for_parent(after.parent_id or "") if m.msg_type == "execute_result"
            ]
            assert value.content["data"]["text/plain"] == "(\"print('seen'); 6 * 7\", 42)"

    run(scenario, timeout=120)
