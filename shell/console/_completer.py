"""``KernelCompleter``: Tab completion from the kernel, asynchronously.

prompt_toolkit calls :meth:`KernelCompleter.get_completions_async` as a task
on the event loop, so typing goes on while the kernel answers. A reply that
arrives after the text changed is dropped twice over: prompt_toolkit ignores
completions for an outdated document, and this completer yields nothing for
a request superseded by a newer one. Type and signature metadata
(``_jupyter_types_experimental``, which IPython and Loom's kernel send) is
shown as the completion's ``display_meta``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable
from typing import Any

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from kernel import KernelError

from ._link import KernelLink

__all__ = ["KernelCompleter", "completions_from_reply"]

#: Seconds to wait for a complete_reply before giving up on this Tab.
COMPLETE_TIMEOUT = 5.0
_META_WIDTH = 40


class KernelCompleter(Completer):
    """Completes from ``link``'s kernel; no completions while it is busy or unusable."""

    def __init__(self, link: KernelLink, timeout: float = COMPLETE_TIMEOUT) -> None:
        self.link = link
        self.timeout = timeout
        self._generation = 0

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        return []  # synchronous completion would block on the kernel: only async is offered

    async def get_completions_async(
        self, document: Document, complete_event: CompleteEvent
    ) -> AsyncGenerator[Completion, None]:
        if not self.link.is_usable or self.link.state == "busy" or not document.text.strip():
            return  # a busy kernel answers only after its cell: do not queue up requests
        self._generation += 1
        generation = self._generation
        try:
            async with asyncio.timeout(self.timeout):
                reply = await self.link.client.complete(document.text, document.cursor_position)
        except (TimeoutError, KernelError):
            return
        if generation != self._generation:
            return  # a newer request is under way: this answer is stale
        for completion in completions_from_reply(reply, document.text, document.cursor_position):
            yield completion


def completions_from_reply(reply: dict[str, Any], text: str, cursor: int) -> list[Completion]:
    """prompt_toolkit completions for a ``complete_reply`` content about ``text``."""
    if reply.get("status", "ok") != "ok":
        return []
    matches = [m for m in reply.get("matches") or [] if isinstance(m, str)]
    start = int(reply.get("cursor_start", cursor))
    end = int(reply.get("cursor_end", cursor))
    meta: dict[str, str] = {}
    types = (reply.get("metadata") or {}).get("_jupyter_types_experimental") or []
    for item in types:
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            meta[item["text"]] = _describe(item)
    out = []
    for match in dict.fromkeys(matches):  # unique, in the kernel's order
        # The kernel replaces [start, end); prompt_toolkit only text before the
        # cursor, so drop the part of the match that is already after it.
        after = text[cursor:end]
        insert = match[: len(match) - len(after)] if after and match.endswith(after) else match
        out.append(
            Completion(
                insert,
                display=match,
                start_position=min(start - cursor, 0),
                display_meta=meta.get(match, ""),
            )
        )
    return out


def _describe(item: dict[str, Any]) -> str:
    kind = str(item.get("type") or "")
    signature = str(item.get("signature") or "")
    text = f"{kind} {signature}".strip()
    return text if len(text) <= _META_WIDTH else text[: _META_WIDTH - 1] + "…"
