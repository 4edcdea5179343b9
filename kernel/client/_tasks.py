"""Owned tasks: an ``asyncio.TaskGroup`` that callbacks can spawn into.

Every task Loom's client and front ends start belongs to a task group, so
none outlives its owner and none fails unseen. Two things a bare
``TaskGroup`` does not do are needed again and again (the client's readers,
the console's cells and interrupts, ``loom run``'s cells):

* spawning from synchronous callbacks (a key press, a signal, a message) and
  cancelling what is still running when the owner is done:
  :class:`TaskSet`, opened with :func:`open_task_set`;
* leaving the owner's *own* exception as it is: a ``TaskGroup`` wraps the
  exception its body raises in an ``ExceptionGroup``, which would turn, say,
  the ``KernelError`` of a kernel that could not start into a group every
  caller must unpack.

A task that raises still brings its group down (cancelling the owner and
raising an ``ExceptionGroup``): that is a bug and must not pass silently.
Work whose failure is an expected outcome (a cell whose kernel died) is
spawned as :func:`settled` and returns an :class:`Outcome` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar, cast

__all__ = ["Outcome", "TaskSet", "open_task_set", "settled"]

T = TypeVar("T")


class TaskSet:
    """The tasks of one owner, spawned into its ``TaskGroup`` (see :func:`open_task_set`)."""

    def __init__(self, group: asyncio.TaskGroup) -> None:
        self._group = group
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Run ``coro`` as a task of the group; callable from synchronous code.

        Raises ``RuntimeError`` once the owner is done (its group accepts no tasks).
        """
        try:
            task = self._group.create_task(coro, name=name)
        except RuntimeError:
            coro.close()  # never run: do not leave it to warn "never awaited"
            raise
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel_all(self) -> None:
        """Cancel every task still running (they end at their next ``await``)."""
        for task in list(self._tasks):
            task.cancel()

    def __len__(self) -> int:
        """How many tasks are still running."""
        return len(self._tasks)


@asynccontextmanager
async def open_task_set() -> AsyncIterator[TaskSet]:
    """A task group for the body's lifetime, as a :class:`TaskSet`.

    On exit, normal or not, every task still running is cancelled and awaited.
    An exception of the body leaves as itself, not in an ``ExceptionGroup``;
    an exception of a task cancels the body and leaves as an ``ExceptionGroup``.
    """
    raised: Exception | None = None
    async with asyncio.TaskGroup() as group:
        tasks = TaskSet(group)
        try:
            yield tasks
        except Exception as exc:
            # Leave the group cleanly and re-raise below: a TaskGroup would wrap
            # the body's own exception in an ExceptionGroup.
            raised = exc
        finally:
            tasks.cancel_all()
    if raised is not None:
        raise raised


class Outcome(Generic[T]):
    """How an awaitable ended: its ``value``, or the ``error`` it raised.

    A plain class, not a dataclass: the console imports this module before its
    first prompt, and ``@dataclass`` would cost milliseconds there.
    """

    __slots__ = ("error", "value")

    def __init__(self, value: T | None = None, error: Exception | None = None) -> None:
        self.value = value
        self.error = error

    def unwrap(self) -> T:
        """The value; raises the error instead if there was one."""
        if self.error is not None:
            raise self.error
        return cast(T, self.value)  # set whenever error is None

    def __repr__(self) -> str:
        return f"Outcome(value={self.value!r}, error={self.error!r})"


async def settled(awaitable: Awaitable[T]) -> Outcome[T]:
    """Await ``awaitable`` and return how it ended; never raises an ``Exception``
    (cancellation still propagates). For tasks whose failure is an outcome."""
    try:
        return Outcome(await awaitable)
    except Exception as exc:
        return Outcome(error=exc)
