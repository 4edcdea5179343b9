"""Tab completion inside ``%px`` code comes from an engine's namespace.

``locate`` (pure) is checked on its own; then end to end: a real cluster and a real
kernel answering ``complete_request`` for names that exist only on the engines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _cluster_support import isolate, running_cluster
from _support import Reaper, run

from kernel import KernelClient, builtin_loom_spec, get_kernel_spec, start_kernel
from parallel.magics._px_complete import EngineCode, locate, shift

TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def test_locate_finds_the_code_bound_for_the_engines() -> None:
    # %%px: the body, not the magic's line
    cell = "%%px --targets 1\nx = zz_a"
    assert locate(cell, len(cell), [""]) == EngineCode("", "x = zz_a", 8, 17)
    assert locate(cell, 5, [""]) is None
    # %px: the code after the options (and after --)
    line = "%px -t 0,1 --noblock zz_a"
    assert locate(line, len(line), [""]) == EngineCode("", "zz_a", 4, 21)
    assert locate(line, 7, [""]) is None  # among the options
    assert locate("%px -- -zz", 10, [""]) == EngineCode("", "-zz", 3, 7)
    # a %px line inside a cell of other code
    cell = "a = 1\n%px zz_b\nb = 2"
    assert locate(cell, 14, [""]) == EngineCode("", "zz_b", 4, 10)
    assert locate(cell, 3, [""]) is None
    # suffixes: %px0 is its own set, and not %px followed by code "0..."
    assert locate("%px0 zz", 7, ["", "0"]) == EngineCode("0", "zz", 2, 5)
    assert locate("%px0 zz", 7, [""]) is None
    # %autopx: every cell goes to the engines, except the one that turns it off
    assert locate("zz", 2, [""], autopx="") == EngineCode("", "zz", 2, 0)
    assert locate("%autopx", 7, [""], autopx="") is None
    assert locate("zz", 2, [""]) is None


def test_shift_moves_every_position() -> None:
    reply = {
        "matches": ["zz_a"],
        "cursor_start": 0,
        "cursor_end": 2,
        "metadata": {"_jupyter_types_experimental": [{"start": 0, "end": 2, "text": "zz_a"}]},
    }
    moved = shift(reply, 10)
    assert (moved["cursor_start"], moved["cursor_end"]) == (10, 12)
    assert moved["metadata"]["_jupyter_types_experimental"][0]["start"] == 10


async def _complete(client: KernelClient, code: str) -> dict[str, Any]:
    reply = await client.complete(code, len(code), timeout=TIMEOUT)
    return dict(reply)


@pytest.mark.peer
@pytest.mark.parametrize("kernel_name", ["loom", "python3"])
def test_completion_in_px_code_comes_from_an_engine(kernel_name: str) -> None:
    spec = builtin_loom_spec() if kernel_name == "loom" else get_kernel_spec("python3")
    with running_cluster(2):

        async def scenario(reaper: Reaper) -> None:
            async with start_kernel(spec=spec, startup_timeout=30) as (manager, client):
                reaper.track_manager(manager)
                for code in ("%load_ext parallel", "%px zz_engine_only = 1", "zz_local = 2"):
                    reply = await client.execute(code, timeout=TIMEOUT)
                    assert reply.content["status"] == "ok", (code, reply.content)
                # An engine's first completion imports its completer (and jedi): on a
                # loaded machine it may miss COMPLETE_TIMEOUT and complete locally once.
                await _complete(client, "%px zz_")
                line = await _complete(client, "%px print(zz_")
                assert "zz_engine_only" in line["matches"], line
                assert "zz_local" not in line["matches"]
                assert line["cursor_start"] == len("%px print(")
                cell = await _complete(client, "%%px --targets 1\ny = zz_eng")
                assert cell["matches"] == ["zz_engine_only"], cell
                assert cell["cursor_start"] == len("%%px --targets 1\ny = ")
                local = await _complete(client, "zz_")  # not %px code: the kernel's own
                assert "zz_local" in local["matches"]
                assert "zz_engine_only" not in local["matches"]

        run(scenario, timeout=180)
