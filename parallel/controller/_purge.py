"""What a client's ``purge_request`` asks the hub to forget, and what it must not let back.

Theory of operation
-------------------
A client purges records by id (ipyparallel's ``purge_hub_results(jobs)``), by engine
(``targets``) or all of them. The hub is not in a task's path: an engine sends a task's
records after replying (``_records``, the record window: up to 100 ms, or at its next
ping while the task runs). So a client that purges a result it holds may name a task
the hub has no record of yet: there is nothing to delete, and the record would appear
when it arrives. The hub therefore keeps the ids it was asked to purge by name
(:class:`Tombstones`) and drops rows for them from later batches. Purges by engine or
``"all"`` name no ids: what arrives after them stays (a task that finished within its
record window of such a purge).

A task still pending (started, no result) named by id is not purged (as ipyparallel's
hub refuses one): the reply names it (``running``) and nothing of the request is done.
The client that sent it and holds its result knows better (the reply's record is on its
way) and asks again until the record says finished (``parallel.client._purge_client``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from kernel.protocol import JSONDict, MalformedMessage

__all__ = ["TOMBSTONE_LIMIT", "PurgeRequest", "Tombstones"]

#: How many purged ids the hub keeps to drop their late records. A late record comes
#: within a record window of its purge (100 ms; a second for a start sent at a ping), so
#: only the newest ids matter; this bounds the memory (about 10 MB) of a purge naming
#: millions of tasks.
TOMBSTONE_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class PurgeRequest:
    """A ``purge_request``'s content, checked: ``msg_ids`` (msg_ids or load-balanced
    task ids, or ``"all"``) and ``engine_ids`` (whose finished records go)."""

    msg_ids: list[str] | Literal["all"]
    engine_ids: list[int]

    @classmethod
    def of(cls, content: JSONDict) -> PurgeRequest:
        """:class:`MalformedMessage` naming what is wrong, or nothing to purge."""
        msg_ids: object = content.get("msg_ids") or []
        engine_ids: object = content.get("engine_ids") or []
        if msg_ids != "all" and not _are_texts(msg_ids):
            raise MalformedMessage("msg_ids must be 'all' or a list of strings")
        if not _are_ids(engine_ids):
            raise MalformedMessage("engine_ids must be null or a list of engine ids")
        if not msg_ids and not engine_ids:
            raise MalformedMessage("a purge names msg_ids, 'all' or engine_ids")
        return cls("all" if msg_ids == "all" else msg_ids, engine_ids)


def _are_texts(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _are_ids(value: object) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    )


class Tombstones:
    """Ids purged by name, newest last, at most ``limit`` (module docstring)."""

    def __init__(self, limit: int = TOMBSTONE_LIMIT) -> None:
        self._limit = limit
        self._ids: dict[str, None] = {}  # a dict: ordered, so the oldest go first

    def __bool__(self) -> bool:
        return bool(self._ids)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._ids

    def add(self, ids: Sequence[str]) -> None:
        for msg_id in ids:
            self._ids.pop(msg_id, None)  # named again: newest again
            self._ids[msg_id] = None
        excess = len(self._ids) - self._limit
        if excess > 0:
            for oldest in list(self._ids)[:excess]:
                del self._ids[oldest]

    def drop_from(self, rows: Sequence[tuple[Any, ...]], *, task_id: bool) -> list[tuple[Any, ...]]:
        """``rows`` (as ``TaskDB.add_rows`` takes them: msg_id first, then the task id if
        ``task_id``) without those of purged ids."""
        ids = self._ids
        if task_id:
            return [row for row in rows if row[0] not in ids and row[1] not in ids]
        return [row for row in rows if row[0] not in ids]
