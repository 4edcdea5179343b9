"""Aborting queued tasks (ipyparallel messaging, ``abort_request``).

The request arrives on control, answered by the I/O thread while the main thread may be
running a task; the ids it lists are answered ``aborted`` when the shell loop reaches
them, instead of being run. An id whose task already ran is simply forgotten later. A
set's ``add`` and ``discard`` are atomic under the GIL, so the two threads need no lock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from kernel.protocol import Message, Reply

__all__ = ["AbortList"]

#: At most this many aborted ids are remembered (ids of tasks that already ran would
#: otherwise accumulate); the oldest are forgotten first.
MAX_ABORTED = 100_000

ShellHandler = Callable[[Message, list[bytes]], Awaitable[Reply | None]]


class AbortList:
    """The msg_ids clients asked to abort; see the module docstring."""

    def __init__(self) -> None:
        self._ids: dict[str, None] = {}

    def on_abort_request(self, request: Message) -> Reply:
        """Control handler: remember ``content["msg_ids"]``."""
        ids = request.content.get("msg_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return Reply(
                {
                    "status": "error",
                    "ename": "ValueError",
                    "evalue": "msg_ids must be a list of strings",
                    "traceback": [],
                }
            )
        for msg_id in ids:
            self._ids[msg_id] = None
        while len(self._ids) > MAX_ABORTED:
            del self._ids[next(iter(self._ids))]
        return Reply({"status": "ok"})

    def guard(self, handler: ShellHandler) -> ShellHandler:
        """``handler``, except for aborted requests, which get an ``aborted`` reply."""

        async def guarded(request: Message, identities: list[bytes]) -> Reply | None:
            if self._ids.pop(request.msg_id, 0) is None:
                metadata = {"status": "aborted", "dependencies_met": False}
                return Reply({"status": "aborted"}, metadata)
            return await handler(request, identities)

        return guarded
