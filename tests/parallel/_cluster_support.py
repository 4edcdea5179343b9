"""A real cluster for tests: a controller and engines as processes, killed by PID after.

``running_cluster(n)`` yields a started :class:`parallel.Cluster` and its connected
client; afterwards the controller and every engine the client ever saw are SIGKILLed
(with their process groups) and reaped, whatever the test did. ``main_function``
builds functions that belong to ``__main__``, as functions typed in a script, a console
or a notebook do: ipyparallel semantics give them the engine's namespace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from parallel import Client, Cluster


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Cluster files and kernel history in ``tmp_path``; engines find this checkout."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("LOOM_HISTORY_FILE", str(tmp_path / "history.sqlite"))


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_cluster(
    n: int,
    *,
    timeout: float = 60.0,
    transport: str = "ipc",
    restart_engines: bool = True,
    db: bool = True,
) -> Iterator[tuple[Cluster, Client]]:
    cluster = Cluster(n=n, transport=transport, restart_engines=restart_engines, db=db)
    pids: set[int] = set()
    try:
        client = cluster.start_and_connect_sync(timeout=timeout)
        assert cluster._process is not None
        pids.add(cluster._process.pid)
        pids |= {record.pid for record in client._records.values()}
        yield cluster, client
        pids |= {record.pid for record in client._records.values()}
    finally:
        if cluster._process is not None:
            pids.add(cluster._process.pid)
        cluster.stop_cluster_sync()  # the graceful way first; then nothing may be left
        for pid in pids:
            _kill(pid)


def main_function(source: str, name: str) -> Callable[..., Any]:
    """The function ``name`` defined by ``source`` in a fresh ``__main__`` namespace."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(textwrap.dedent(source), "<main>", "exec"), namespace)
    return namespace[name]  # type: ignore[no-any-return]


@contextlib.contextmanager
def module_cluster(tmp_path_factory: pytest.TempPathFactory, name: str, n: int) -> Iterator[Client]:
    """A cluster of ``n`` engines for a module's tests (``running_cluster``), its files
    in a temporary directory of its own (``isolate``); the connected client."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, tmp_path_factory.mktemp(name))
        with running_cluster(n) as (_, client):
            yield client


#: Waits while the file at ``path`` exists (a task held running until a test removes it).
WAIT_WHILE_FLAG = main_function(
    """
    def wait_while_flag(path):
        import os, time
        while os.path.exists(path):
            time.sleep(0.02)
        return "done"
    """,
    "wait_while_flag",
)
#: The engine's ``marker`` (what a test's setup or push put there).
READ_MARKER = main_function("def read_marker():\n    return marker\n", "read_marker")
