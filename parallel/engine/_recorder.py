"""The engine's side of durable results: each task's request and reply, copied to the hub.

``recorded(handler, link)`` wraps the ``apply_request`` handler: when a task starts, its
request (header, content, metadata, buffers: enough to resubmit it) goes to the hub
link's queue; when it is answered, its reply (content, metadata, buffers). Only queue
appends happen here; ``_hub_link`` sends them in batches on its own thread, after the
reply (``durability="async"``, the default): what a window of ``LOOM_RECORD_WINDOW``
(100 ms) brought goes as one message, or sooner, once the engine's replies stop for
``LOOM_RECORD_QUIET`` (25 ms) after a lone reply (a timer on this loop,
:class:`QuietFlush`, asks the link to ``flush``); replies that come in a stream are left
to the window's end, which is no later than their longest quiet time.
The reply's record wakes that thread only if it sleeps, and only after the reply left
(``call_soon``: the shell handler sends the reply in the same step of the loop). With
``durability="sync"`` the handler waits until the hub has committed the reply's record
before it returns, so the client can never hold a result the controller's database lacks.

The interface the engine uses: ``recorded(handler, link)``; of the link, only
``record(fields, buffers, done=None, *, wake=True, nbytes=None)``, ``sleeping``, ``wake()``,
``flush()``, ``window`` (its ``quiet``) and ``durability``. A record's buffers are the
request's (bytes or read-only views of received frames; a request whose buffers are
large enough for shared memory is recorded without them) and the reply's, copied here
unless they are bytes (``_as_sent``): the link reads them when it sends the batch, on its
thread, up to a window later, and a result's buffer can be an object's live memory.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence

from kernel.protocol import JSONDict, Message, Reply, utc_now_iso

from ._hub_link import HubLink
from ._record_window import QuietFlush

__all__ = ["recorded"]

ShellHandler = Callable[[Message, list[bytes]], Awaitable[Reply | None]]

REQUEST_LIMIT = 1 << 20
RESULT_LIMIT = 16 << 20


def _limit(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


def _size(buffers: Sequence[bytes | memoryview]) -> int:
    if not buffers:
        return 0
    if len(buffers) == 1 and type(buffers[0]) is bytes:  # a pickled call or result
        return len(buffers[0])
    return sum(memoryview(b).nbytes for b in buffers)


def recorded(handler: ShellHandler, link: HubLink) -> ShellHandler:
    """``handler``, with its requests and replies recorded through ``link``."""
    sync = link.durability == "sync"
    request_limit = _limit("LOOM_RECORD_REQUEST_LIMIT", REQUEST_LIMIT)
    result_limit = _limit("LOOM_RECORD_RESULT_LIMIT", RESULT_LIMIT)

    quiet = QuietFlush.for_window(link.window)

    def went_quiet(loop: asyncio.AbstractEventLoop) -> None:
        delay = quiet.fired(loop.time())
        if delay is None:
            link.flush()  # no reply for ``quiet`` s: the records go now, not at the window
        else:
            loop.call_later(delay, went_quiet, loop)

    async def recording(request: Message, identities: list[bytes]) -> Reply | None:
        header, metadata = request.header, request.metadata
        msg_id = request.msg_id
        task: JSONDict = {
            "kind": "task",
            "msg_id": msg_id,
            # What the controller indexes, so that it need not decode the JSON columns.
            "task_id": metadata.get("task_id"),
            "submitted": header.get("date"),
            "client_uuid": header.get("session"),
            "header": header,
            "metadata": metadata,
            "content": request.content,
            "started": utc_now_iso(),
        }
        buffers: Sequence[bytes | memoryview] = request.buffers
        size = _size(buffers)
        if size > request_limit:
            task["metadata"] = {**metadata, "loom_buffers_omitted": size}
            buffers, size = [], 0
        link.record(task, buffers, wake=False, nbytes=size)  # goes with the reply's, or a ping
        reply = await handler(request, identities)
        if reply is None:
            return None
        # The reply's own time when it has one (an apply's metadata), not a second clock read.
        completed = reply.metadata.get("completed")
        record: JSONDict = {
            "kind": "result",
            "msg_id": msg_id,
            "completed": completed if isinstance(completed, str) else utc_now_iso(),
            "status": reply.content.get("status", "ok"),
            "result_content": reply.content,
            "result_metadata": reply.metadata,
        }
        results: Sequence[bytes | memoryview] = reply.buffers
        size = _size(results)
        if size > result_limit:
            record["result_metadata"] = {**reply.metadata, "loom_result_omitted": size}
            results, size = [], 0
        else:
            results = _as_sent(results)
        loop = asyncio.get_running_loop()
        if not sync:
            link.record(record, results, wake=False, nbytes=size)
            if link.sleeping:  # wake it once the reply left, not while it is sent
                loop.call_soon(link.wake)
            delay = quiet.replied(loop.time())
            if delay is not None:
                loop.call_later(delay, went_quiet, loop)
            return reply
        committed = loop.create_future()

        def done() -> None:  # on the link's thread
            loop.call_soon_threadsafe(_resolve, committed)

        link.record(record, results, done, nbytes=size)
        await committed
        return reply

    return recording


def _as_sent(buffers: Sequence[bytes | memoryview]) -> list[bytes | memoryview]:
    """The buffers as they are now. A result's buffer can be the live memory of an object
    (a numpy array the task returned and keeps), which the next task may change in place
    while the record waits for its window: such buffers are copied; bytes are kept."""
    if len(buffers) == 1 and type(buffers[0]) is bytes:  # a plain result's one pickle
        return [buffers[0]]
    out: list[bytes | memoryview] = []
    for buffer in buffers:
        if isinstance(buffer, bytes) or isinstance(memoryview(buffer).obj, bytes):
            out.append(buffer)
        else:
            out.append(memoryview(buffer).tobytes())
    return out


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
