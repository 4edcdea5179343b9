"""``ResultIndex``: msg_ids routed to their result, held weakly, one reference a result."""

from __future__ import annotations

import gc
from typing import Any, cast

from parallel.client._asyncresult import AsyncResult
from parallel.client._result_index import ResultIndex


class _Result:
    """Stands in for an AsyncResult: the index only holds it weakly."""


def _result() -> AsyncResult:
    return cast(AsyncResult, cast(Any, _Result()))


def test_ids_route_to_their_result_until_popped() -> None:
    index = ResultIndex()
    result = _result()
    index.add(result, ["a", "b"])
    assert index.get("a") is result
    assert "b" in index
    assert index.pop("a") is result
    assert index.get("a") is None
    assert "a" not in index
    assert index.pop("a") is None
    assert len(index) == 1


def test_a_dropped_result_takes_its_ids_with_it_but_not_ids_given_to_another() -> None:
    index = ResultIndex()
    dropped, kept = _result(), _result()
    index.add(dropped, ["a", "b", "c"])
    index.add(kept, ["c"])  # "c" now belongs to another result
    del dropped
    gc.collect()
    assert index.get("a") is None
    assert "b" not in index
    assert index.get("c") is kept
    assert len(index) == 1
