"""Record batches cut to the hub's frame limit (issue 12).

The hub takes frames up to a limit (``parallel.protocol._hub_limits``) and libzmq drops a
connection that sends more, losing the message: a batch over it would never be stored,
and the link would hold it unconfirmed, sending it again after each re-registration.
So the hub link never sends one: a batch whose blob (with its rows' strings) exceeds
the budget is cut into batches that fit (:func:`fit_batch`), and a record too large on
its own is slimmed the way the recorder already treats large buffers, saying what it
left out:

1. its buffers go (a request's: ``loom_buffers_omitted`` in its metadata, so it cannot
   be resubmitted; a result's: ``loom_result_omitted`` in the result's metadata, so
   ``rc.get_result`` raises ``ResultNotRecorded`` naming the size);
2. if its JSON is still too large (an exception whose message is 100 MB), long strings
   and long lists in it are cut, each saying how much is missing ("… [N more
   characters not recorded]"), and its metadata says ``loom_record_truncated``: the
   JSON's size before;
3. a record that cannot fit even so (a msg_id of megabytes) is dropped, with a warning.

Batches under the budget, every batch of ordinary tasks, are sent as they were encoded:
this costs them one comparison (``len(blob) + ROW_OVERHEAD * rows``; an exact
:func:`batch_size` would cost a pass over the rows, about half of encoding them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from kernel.protocol import JSONDict
from kernel.transport import RateLimitedLog

__all__ = ["ROW_OVERHEAD", "batch_size", "fit_batch", "truncated"]

log = logging.getLogger("loom.engine")
_warn = RateLimitedLog(log)

Buffer = bytes | memoryview
Done = Callable[[], None]
Item = tuple[JSONDict, Sequence[Buffer], Done | None]

#: What a row costs in the batch's JSON content besides the strings its frames hold too
#: (task id, dates, session: copies of the request's JSON): brackets, nulls, its frames'
#: seven sizes, and the strings the engine makes (start and completion dates, the
#: msg_id of a result row). So a batch whose blob plus this per row is under the budget
#: has both its frames under it, which the hub link checks with no pass over the rows.
#: (A msg_id of megabytes, which only a key holder can send, is not counted there: one
#: who can run code on the engines anyway.)
ROW_OVERHEAD = 256
#: Below this many characters, strings are not cut further: the record is dropped.
MIN_CUT = 64

_JSON_PARTS = {
    "task": ("header", "metadata", "content"),
    "result": ("result_content", "result_metadata"),
}
_TEXT_PARTS = {
    "task": ("msg_id", "task_id", "submitted", "client_uuid", "started"),
    "result": ("msg_id", "completed", "status"),
}


def batch_size(rows: Sequence[Sequence[Any]], frames: Sequence[bytes]) -> int:
    """What a batch weighs against the budget: its blob, and its rows' strings."""
    return sum(len(frame) for frame in frames) + sum(
        ROW_OVERHEAD + sum(len(v) for v in row if isinstance(v, str)) for row in rows
    )


def _item_size(item: Item) -> int:
    from ._hub_link import encode_batch  # (it calls this module)

    return batch_size(*encode_batch([item]))


def fit_batch(batch: Sequence[Item], budget: int) -> list[list[Item]]:
    """``batch`` in order, as batches each under ``budget`` (a record alone over it is
    slimmed; one that cannot be is dropped, its ``done`` called so no handler waits)."""
    parts: list[list[Item]] = []
    part: list[Item] = []
    used = 0
    for item in batch:
        size = _item_size(item)
        if size > budget:
            slim = _slimmed(item, budget)
            if slim is None:
                if item[2] is not None:
                    item[2]()
                continue
            item, size = slim
        if part and used + size > budget:
            parts.append(part)
            part, used = [], 0
        part.append(item)
        used += size
    if part:
        parts.append(part)
    return parts


def _slimmed(item: Item, budget: int) -> tuple[Item, int] | None:
    fields, buffers, done = item
    kind = "task" if fields.get("kind") == "task" else "result"
    meta = "metadata" if kind == "task" else "result_metadata"
    msg_id = str(fields.get("msg_id"))[:100]
    fields = dict(fields)
    flags: JSONDict = {}
    if buffers:
        nbytes = sum(memoryview(b).nbytes for b in buffers)
        flags["loom_buffers_omitted" if kind == "task" else "loom_result_omitted"] = nbytes
        fields[meta] = {**(fields.get(meta) or {}), **flags}
        size = _item_size((fields, [], done))
        if size <= budget:
            _warn.warning(
                "task %s: its %s's buffers (%d bytes) are not recorded: over the"
                " controller's message limit",
                msg_id,
                "request" if kind == "task" else "result",
                nbytes,
            )
            return (fields, [], done), size
    before = _item_size(({**fields, "kind": kind, "msg_id": ""}, [], None))
    cut = max(budget // 8, MIN_CUT)
    while cut >= MIN_CUT:
        slim = dict(fields)
        for key in _JSON_PARTS[kind]:
            slim[key] = truncated(fields.get(key), cut, max(cut // 64, 4))
        for key in _TEXT_PARTS[kind][1:]:  # the msg_id is the record's key: never cut
            value = fields.get(key)
            if isinstance(value, str) and len(value) > cut:
                slim[key] = value[:cut]
        slim[meta] = {**(slim.get(meta) or {}), **flags, "loom_record_truncated": before}
        size = _item_size((slim, [], done))
        if size <= budget:
            _warn.warning(
                "task %s: its %s record (%d bytes of JSON) is recorded cut: over the"
                " controller's message limit",
                msg_id,
                kind,
                before,
            )
            return (slim, [], done), size
        cut //= 4
    _warn.warning("task %s: its %s record is not recorded: it cannot fit", msg_id, kind)
    return None


def truncated(value: object, chars: int, items: int) -> Any:
    """``value`` (JSON) with strings over ``chars`` characters and lists or objects over
    ``items`` entries cut, each saying how much is missing."""
    if isinstance(value, str):
        if len(value) <= chars:
            return value
        return f"{value[:chars]}… [{len(value) - chars:,} more characters not recorded]"
    if isinstance(value, list | tuple):
        out = [truncated(v, chars, items) for v in value[:items]]
        if len(value) > items:
            out.append(f"… [{len(value) - items:,} more items not recorded]")
        return out
    if isinstance(value, dict):
        kept = list(value.items())[:items]
        cut = {str(k)[:chars]: truncated(v, chars, items) for k, v in kept}
        if len(value) > items:
            cut["loom_keys_not_recorded"] = len(value) - items
        return cut
    return value
