"""Which ``input_request`` an input handler is answering (no pyzmq: front ends import it
before their first prompt)."""

from __future__ import annotations

import contextvars

from kernel.protocol import Message

__all__ = ["current_input_request"]

#: The ``input_request`` an ``InputHandler`` is answering, while it runs (set in the task
#: that calls it). Its metadata may say more than prompt and password: Loom's debugger
#: sends its completion names.
current_input_request: contextvars.ContextVar[Message | None] = contextvars.ContextVar(
    "current_input_request", default=None
)
