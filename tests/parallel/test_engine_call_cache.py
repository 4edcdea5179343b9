"""A real engine reuses a call it unpickled before only where nothing could tell: the
same call again sees the engine's namespace as it is now, and calls that could carry
a change (a mutable default, a closure) still start fresh every time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cluster_support import isolate, main_function, running_cluster

COUNT_CACHED = (
    "import gc\n_cached = sum(len(o) for o in gc.get_objects() if type(o).__name__ == 'CallCache')"
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, Path(tmp_path_factory.mktemp("call-cache")))
        with running_cluster(1) as (_, rc):
            yield rc[0]


def _cached(engine: Any) -> int:
    engine.execute(COUNT_CACHED, block=True)
    return int(engine.pull("_cached", block=True))


def test_the_same_call_again_is_reused_and_sees_the_namespace_as_it_is(engine: Any) -> None:
    adds = main_function("def adds(x):\n    return x + k", "adds")
    before = _cached(engine)
    results = []
    for k in (1, 2, 3):
        engine.execute(f"k = {k}", block=True)
        results.append(engine.apply_sync(adds, 10))
    assert results == [11, 12, 13]
    # Kept, and not once per call: the client's first pickle of a function may differ
    # from the one it keeps for the calls after it (parallel/client/_pickles.py).
    assert before < _cached(engine) <= before + 2


def test_a_pickled_global_the_namespace_lost_comes_back(engine: Any) -> None:
    source = "limit = 5\ndef reads_limit():\n    return limit"
    reads_limit = main_function(source, "reads_limit")
    assert engine.apply_sync(reads_limit) == 5  # copied into the namespace
    engine.execute("limit = 6", block=True)
    assert engine.apply_sync(reads_limit) == 6  # the engine's value wins
    engine.execute("del limit", block=True)
    assert engine.apply_sync(reads_limit) == 5  # copied again, as a fresh unpickle does


def test_calls_that_could_remember_a_task_start_fresh_every_time(engine: Any) -> None:
    default = main_function("def grows(acc=[]):\n    acc.append(1)\n    return len(acc)", "grows")
    closure = main_function(
        "def make():\n    n = 0\n    def count():\n        nonlocal n\n        n += 1\n"
        "        return n\n    return count",
        "make",
    )()
    before = _cached(engine)
    assert [engine.apply_sync(default) for _ in range(3)] == [1, 1, 1]
    assert [engine.apply_sync(closure) for _ in range(3)] == [1, 1, 1]
    assert [engine.apply_sync(len, [1, 2]) for _ in range(2)] == [2, 2]
    assert _cached(engine) == before
