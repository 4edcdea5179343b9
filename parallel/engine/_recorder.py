"""The engine's side of durable results: each task's request and reply, copied to the hub.

``recorded(handler, link)`` wraps the ``apply_request`` handler: when a task starts, its
request (header, content, metadata, buffers: enough to resubmit it) goes to the hub
link's queue; when it is answered, its reply (content, metadata, buffers). Only queue
appends happen here; ``_hub_link`` sends them in batches on its own thread, after the
reply (``durability="async"``, the default). With ``durability="sync"`` the handler
waits until the hub has committed the reply's record before it returns, so the client
can never hold a result the controller's database lacks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kernel.protocol import Message, Reply, utc_now_iso

from ._hub_link import HubLink

__all__ = ["recorded"]

ShellHandler = Callable[[Message, list[bytes]], Awaitable[Reply | None]]


def recorded(handler: ShellHandler, link: HubLink) -> ShellHandler:
    """``handler``, with its requests and replies recorded through ``link``."""
    sync = link.durability == "sync"

    async def recording(request: Message, identities: list[bytes]) -> Reply | None:
        started = utc_now_iso()
        link.record(
            {
                "kind": "task",
                "msg_id": request.msg_id,
                "header": request.header,
                "metadata": request.metadata,
                "content": request.content,
                "started": started,
            },
            request.buffers,
        )
        reply = await handler(request, identities)
        if reply is None:
            return None
        record = {
            "kind": "result",
            "msg_id": request.msg_id,
            "completed": utc_now_iso(),
            "result_content": reply.content,
            "result_metadata": reply.metadata,
        }
        if not sync:
            link.record(record, reply.buffers)
            return reply
        loop = asyncio.get_running_loop()
        committed = loop.create_future()

        def done() -> None:  # on the link's thread
            loop.call_soon_threadsafe(_resolve, committed)

        link.record(record, reply.buffers, done)
        await committed
        return reply

    return recording


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
