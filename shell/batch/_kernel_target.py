"""The kernel of a ``loom run``: started by name or attached with ``--existing``.

:func:`run_on_kernel` connects a client, hands a :class:`BatchKernel` to the
run, and cleans up whatever happens: a kernel it started is shut down (by
``start_kernel``); an ``--existing`` kernel is left running.

A :class:`BatchKernel` knows when its kernel dies, so no wait on it can hang.
Whether it died is :class:`kernel.client.KernelWatcher`'s call, the same the
console makes: ``died`` resolves with the reason as soon as a started kernel's
process exits (learnt from a pidfd) or, for an ``--existing`` kernel (whose
process is not ours), once its heartbeat has been silent for the monitor's
grace period (2.5 s) *and* its heartbeat port refuses connections. A kernel
that is silent but still there (stopped, say) is *not responding*: the run
says so on stderr and waits for it (``--timeout`` bounds that wait).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from kernel import KernelClient, KernelError, connect_client, start_kernel
from kernel.client import (
    DEFAULT_KERNEL_NAME,
    HeartbeatBack,
    HeartbeatLost,
    KernelExited,
    KernelProcess,
    KernelWatcher,
    WatchEvent,
    find_running_kernel,
)
from kernel.client._tasks import open_task_set, settled
from kernel.protocol import ConnectionFileError, JSONDict

__all__ = ["BatchKernel", "KernelTarget", "KernelUnavailable", "run_on_kernel"]

T = TypeVar("T")

#: Seconds an ``--existing`` kernel has to answer ``kernel_info``.
READY_TIMEOUT = 30.0
#: Seconds a started kernel has to come up (``start_kernel``'s default).
STARTUP_TIMEOUT = 60.0
#: Seconds to wait for the reply to an ``interrupt_request``.
INTERRUPT_REPLY_TIMEOUT = 5.0


class KernelUnavailable(Exception):
    """The kernel could not be started or reached; the message says why."""


@dataclass(frozen=True, slots=True)
class KernelTarget:
    """Which kernel to run on: ``existing`` (a connection file as
    :func:`kernel.client.find_running_kernel` takes it, ``""`` = newest) or by name."""

    kernel_name: str = DEFAULT_KERNEL_NAME
    existing: str | None = None


@dataclass(slots=True)
class BatchKernel:
    """A connected, ready kernel and the means to interrupt it and learn of its death."""

    client: KernelClient
    label: str
    died: asyncio.Future[str]
    interrupt: Callable[[], Awaitable[None]]
    kernelspec: JSONDict | None = None

    @property
    def language_info(self) -> object:
        return self.client.kernel_info.get("language_info")


#: Says something about the kernel on the side (``OutputWriter.note``): not responding...
Notice = Callable[[str], None]


async def run_on_kernel(
    target: KernelTarget,
    body: Callable[[BatchKernel], Awaitable[T]],
    *,
    notice: Notice = lambda text: None,
) -> T:
    """Run ``body`` with a ready kernel and return its result.

    ``notice`` is told when the kernel stops responding and when it answers
    again. Raises :class:`KernelUnavailable` if the kernel cannot be started,
    its connection file is unusable, or it does not become ready. ``body`` must
    handle its own errors: anything it raises leaves the client's task group
    wrapped in an ``ExceptionGroup``.
    """
    reason = "the kernel is unavailable"
    try:
        if target.existing is not None:
            return await _on_existing(target.existing, body, notice)
        return await _on_started(target.kernel_name, body, notice)
    # start_kernel raises some errors from inside the client's task group (as a group).
    except* (KernelError, ConnectionFileError, KernelUnavailable) as group:
        reason = _first_message(group)
    raise KernelUnavailable(reason)


def _first_message(group: BaseExceptionGroup[Exception]) -> str:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return str(leaf)


async def _on_started(name: str, body: Callable[[BatchKernel], Awaitable[T]], notice: Notice) -> T:
    async with start_kernel(name, startup_timeout=STARTUP_TIMEOUT) as (manager, client):
        spec = manager.spec
        kernelspec = {"name": spec.name, "display_name": spec.display_name or spec.name}
        if spec.language:
            kernelspec["language"] = spec.language

        async def interrupt() -> None:
            await manager.interrupt(client)

        label = f"kernel {name!r}"
        async with _watched(client, label, notice, manager.process) as died:
            kernel = BatchKernel(client, label, died, interrupt, kernelspec)
            try:
                return await body(kernel)
            except asyncio.CancelledError:
                # Ctrl-C: stop now (SIGTERM, then SIGKILL) instead of start_kernel's polite
                # shutdown_request, which a kernel busy in a cell may sit on for seconds.
                await manager.shutdown(client, now=True)
                raise


async def _on_existing(
    existing: str, body: Callable[[BatchKernel], Awaitable[T]], notice: Notice
) -> T:
    found = find_running_kernel(existing)  # the console's rule: stale files passed over
    path, info = found.path, found.info
    if found.skipped:
        names = ", ".join(str(p) for p in found.skipped)
        notice(f"skipped stale connection files (their kernels are gone): {names}")
    async with connect_client(info, wait_ready=False) as client:

        async def interrupt() -> None:
            # Not our process: ask by message (ipykernel and Loom both accept it).
            await client.interrupt(timeout=INTERRUPT_REPLY_TIMEOUT)

        label = f"kernel at {path}"
        async with _watched(client, label, notice) as died:
            kernel = BatchKernel(client, label, died, interrupt)
            await _until_ready(kernel)
            return await body(kernel)


@asynccontextmanager
async def _watched(
    client: KernelClient, label: str, notice: Notice, process: KernelProcess | None = None
) -> AsyncIterator[asyncio.Future[str]]:
    """Watch the kernel (its ``process`` if ours) while the body runs.

    Yields the future that resolves with why it died (``"it was killed by SIGKILL"``).
    """
    died: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def report(event: WatchEvent) -> None:
        match event:
            case KernelExited(reason):
                if not died.done():
                    died.set_result(f"it {reason}")
            case HeartbeatLost(reason):
                notice(f"the {label} is not responding: it {reason}")
            case HeartbeatBack():
                notice(f"the {label} is answering again")

    watcher = KernelWatcher(report, info=None if process else client.info, process=process)
    client.on_heartbeat = watcher.heartbeat_changed
    async with open_task_set() as tasks:  # on exit, the watcher's task ends
        tasks.spawn(watcher.run(), name="loom-run-watch")
        try:
            yield died
        finally:
            client.on_heartbeat = None
            died.cancel()


async def _until_ready(kernel: BatchKernel) -> None:
    """Wait for ``kernel_info``, failing early when the watcher says nobody is there."""
    async with open_task_set() as tasks:  # on exit, a wait the death cut short ends
        ready = tasks.spawn(settled(kernel.client.wait_for_ready(READY_TIMEOUT)))
        await asyncio.wait((ready, kernel.died), return_when=asyncio.FIRST_COMPLETED)
    if ready.cancelled():
        raise KernelUnavailable(f"the {kernel.label} is not running: {kernel.died.result()}")
    outcome = ready.result()
    if isinstance(outcome.error, TimeoutError):
        raise KernelUnavailable(
            f"the {kernel.label} did not answer kernel_info within {READY_TIMEOUT:g} s"
        )
    outcome.unwrap()
