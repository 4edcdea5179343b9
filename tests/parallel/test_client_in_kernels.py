"""The client inside a running kernel's cell: blocking calls and ``await`` both work.

No thread and no nested loop: a blocking call pumps the client's sockets itself, so it
works while a kernel's own loop is suspended in the cell (Loom's kernel hides its loop,
ipykernel's tornado loop is running underneath); ``await`` runs on the kernel's loop.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _cluster_support import isolate, running_cluster
from _support import Reaper, run

from kernel import builtin_loom_spec, get_kernel_spec, start_kernel
from kernel.protocol import Message

TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)


def _result(messages: list[Message]) -> str:
    texts = [m.content["data"]["text/plain"] for m in messages if m.msg_type == "execute_result"]
    errors = [m.content for m in messages if m.msg_type == "error"]
    assert not errors, errors
    assert len(texts) == 1, messages
    return str(texts[0])


@pytest.mark.parametrize("kernel_name", ["loom", "python3"])
def test_blocking_and_awaited_calls_inside_a_kernel_cell(kernel_name: str) -> None:
    with running_cluster(2) as (cluster, _):
        path = cluster.cluster_file

        async def scenario(reaper: Reaper) -> None:
            spec = builtin_loom_spec() if kernel_name == "loom" else get_kernel_spec("python3")
            async with start_kernel(spec=spec, startup_timeout=30) as (manager, client):
                reaper.track_manager(manager)
                cells = [
                    f"import parallel as ipp\nrc = ipp.Client({str(path)!r})\n"
                    "rc[:].apply_sync(lambda: 21 * 2)",
                    "rc.load_balanced_view().map_sync(lambda x: x + 1, range(5))",
                    "await rc[1].apply_async(lambda: 'awaited')",
                ]
                expected = ["[42, 42]", "[1, 2, 3, 4, 5]", "'awaited'"]
                for code, want in zip(cells, expected, strict=True):
                    out: list[Message] = []
                    reply = await client.execute(code, on_output=out.append, timeout=TIMEOUT)
                    assert reply.content["status"] == "ok", out
                    assert _result(out) == want
                await client.execute("rc.close()", timeout=TIMEOUT)

        run(scenario, timeout=120)
