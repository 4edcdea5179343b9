"""Which :class:`~._asyncresult.AsyncResult` each msg_id belongs to, held weakly.

The client routes every reply by its request's msg_id to the result that waits for it,
and must not keep a result alive that its caller dropped (memory stays bounded: issue
10). A ``weakref.WeakValueDictionary`` did that with one weak reference per msg_id,
made and dropped by Python code at every request and reply (a broadcast to 16 engines
made 16). Here each result has one weak reference, shared by its msg_ids in a plain
dict; when the result is collected, its callback removes those of its msg_ids that still
point to it. A finished msg_id is removed at once (:meth:`ResultIndex.pop`).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._asyncresult import AsyncResult

__all__ = ["ResultIndex"]


class ResultIndex:
    """msg_id -> its result, held weakly (module docstring)."""

    __slots__ = ("_refs",)

    def __init__(self) -> None:
        self._refs: dict[str, weakref.ref[AsyncResult]] = {}

    def add(self, result: AsyncResult, msg_ids: Sequence[str]) -> None:
        """Route ``msg_ids`` to ``result`` (until each is popped or ``result`` is gone)."""
        refs = self._refs
        ids = tuple(msg_ids)

        def forget(ref: weakref.ref[AsyncResult]) -> None:
            # Runs when the result is collected: only the ids still pointing to it go
            # (one may have been given to another result since).
            for msg_id in ids:
                if refs.get(msg_id) is ref:
                    del refs[msg_id]

        ref = weakref.ref(result, forget)
        for msg_id in ids:
            refs[msg_id] = ref

    def get(self, msg_id: str) -> AsyncResult | None:
        ref = self._refs.get(msg_id)
        return None if ref is None else ref()

    def pop(self, msg_id: str) -> AsyncResult | None:
        """The result of ``msg_id`` (None if none, or collected), no longer routed to."""
        ref = self._refs.pop(msg_id, None)
        return None if ref is None else ref()

    def pop_all(self) -> list[AsyncResult]:
        """Every result still routed to, once each; none is routed to any more."""
        results = {id(r): r for ref in self._refs.values() if (r := ref()) is not None}
        self._refs.clear()
        return list(results.values())

    def __contains__(self, msg_id: object) -> bool:
        ref = self._refs.get(msg_id) if isinstance(msg_id, str) else None
        return ref is not None and ref() is not None

    def __len__(self) -> int:
        return len(self._refs)
