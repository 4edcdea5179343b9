"""``KernelLink``: the console's view of one kernel and its lifecycle.

Theory of operation
-------------------
The console talks to a kernel through a :class:`~kernel.KernelClient`; if it
started the kernel it also holds the :class:`~kernel.KernelManager`. This
module turns the raw signals both provide into one *state* the rest of the
console can show and act on:

``starting``, ``idle``, ``busy``
    what the kernel itself says on iopub (``status`` messages whose parent is
    an ``execute_request``: our completion and ``is_complete`` requests would
    otherwise make the toolbar flicker). ``starting`` is also the state of a
    link whose kernel is still being launched (see below).
``restarting``
    while :meth:`KernelLink.restart` runs.
``dead``
    a kernel we started exited without being asked (learnt within
    milliseconds from the process's pidfd via ``manager.wait_exit``), or an
    attached kernel's heartbeat stopped *and* its heartbeat port refuses TCP
    connections (nothing listens there any more).
``not responding``
    the heartbeat stopped but the process is alive: stopped by a signal
    (``process.is_stopped()``), or for an attached kernel its port still
    accepts connections. This state ends by itself when the echo resumes.

On death every outstanding request is failed with :class:`~kernel.KernelDied`
(``client.fail_pending``), so no caller waits forever. State changes and
notices go to ``on_notice(text)`` and ``on_change()``; the link prints nothing.

A link can exist before its kernel answers (:meth:`KernelLink.starting`), so
the console can show its first prompt while the kernel boots: :meth:`serve`
(a task for the link's lifetime) launches the kernel (unless the manager's
``launch`` did), connects the client, waits until it answers, and keeps the
client open until :meth:`shutdown`.
Until then :attr:`~KernelLink.client` raises :class:`~kernel.KernelError`,
:attr:`~KernelLink.is_usable` is False (so completion and ``is_complete``
do not wait for it) and :meth:`wait_ready` is how a cell waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernel import KernelDied, KernelError
from kernel.client._watch import HeartbeatBack, HeartbeatLost, KernelExited, KernelWatcher

if TYPE_CHECKING:
    from kernel import InputHandler, KernelClient, KernelManager
    from kernel.client import WatchEvent
    from kernel.protocol import JSONDict, Message

__all__ = ["KernelLink"]

#: Lifecycle states that override what the kernel's own status says.
STARTING, IDLE, BUSY = "starting", "idle", "busy"
RESTARTING, DEAD, NOT_RESPONDING = "restarting", "dead", "not responding"


class KernelLink:
    """A client, maybe a manager, and the lifecycle state derived from both.

    ``manager`` is None for an attached kernel (``--existing``): it is then
    interrupted by ``interrupt_request`` and can be neither restarted nor shut
    down by the console. Call :meth:`watch` as a task for the link's lifetime
    (and :meth:`serve` too, for a link made by :meth:`starting`).
    """

    def __init__(
        self,
        client: KernelClient | None,
        manager: KernelManager | None,
        name: str,
        *,
        on_notice: Callable[[str], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.manager = manager
        self.name = name
        self.on_notice = on_notice or (lambda text: None)
        self.on_change = on_change or (lambda: None)
        #: Appended to the death notice (the interactive console says how to restart).
        self.death_hint = ""
        self._client: KernelClient | None = None
        self._kernel_state = IDLE
        self._override: str | None = None
        # Set while a process we expect to live runs; cleared around restart/shutdown,
        # so the watcher can tell an exit we caused from a death.
        self._running = asyncio.Event()
        # Attached: the heartbeat port is probed; started: the process is watched once ready.
        self._watcher = KernelWatcher(self._on_watch, info=client.info if client else None)
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._start: Callable[[], Awaitable[Any]] | None = None
        self._serving: asyncio.Task[Any] | None = None
        self._closed = asyncio.Event()
        self._foreign_output: Callable[[Message, bool], None] | None = None
        self._input_handler: InputHandler | None = None
        if client is not None:
            self._connect(client)
            self._became_ready()

    @classmethod
    def starting(cls, manager: KernelManager, name: str) -> KernelLink:
        """A link to a kernel that :meth:`serve` is yet to connect to, launching it
        first unless ``manager.launch()`` did (state ``starting``)."""
        link = cls(None, manager, name)
        link._override = STARTING
        link._start = manager.start
        return link

    # -- the client -------------------------------------------------------------

    @property
    def client(self) -> KernelClient:
        """The connected client; :class:`KernelError` while the kernel is starting."""
        if self._client is None:
            raise KernelError(f"kernel {self.name!r} is still starting")
        return self._client

    @property
    def is_ready(self) -> bool:
        """True once the kernel has answered (the client is usable)."""
        return self._ready.done() and self._ready.exception() is None

    @property
    def start_error(self) -> KernelError | None:
        """Why the kernel of a :meth:`starting` link could not start (None: it did, or
        is still starting)."""
        if not self._ready.done():
            return None
        exc = self._ready.exception()
        return exc if isinstance(exc, KernelError) else None

    @property
    def kernel_info(self) -> JSONDict:
        """The ``kernel_info_reply`` content; empty while the kernel is starting."""
        return self._client.kernel_info if self._client is not None else {}

    @property
    def language(self) -> str:
        """The kernel's language: from ``kernel_info`` once known, else its kernelspec."""
        info = self.kernel_info.get("language_info") or {}
        name = info.get("name") if isinstance(info, dict) else None
        if not name and self.manager is not None:
            with contextlib.suppress(KernelError):
                name = self.manager.spec.language
        return str(name or "").lower()

    @property
    def connection_file(self) -> Path | None:
        """The connection file of a kernel we started (None while it is starting)."""
        if self.manager is None:
            return None
        try:
            return self.manager.connection_file
        except KernelError:
            return None

    async def wait_ready(self) -> None:
        """Return once the kernel answers requests.

        Raises the :class:`KernelError` (e.g. :class:`~kernel.KernelStartError`)
        that stopped it from starting.
        """
        await asyncio.shield(self._ready)

    def set_handlers(
        self,
        *,
        foreign_output: Callable[[Message, bool], None] | None = None,
        input_handler: InputHandler | None = None,
    ) -> None:
        """The client's ``on_foreign_output`` and ``input_handler``, now or once connected."""
        self._foreign_output = foreign_output
        self._input_handler = input_handler
        if self._client is not None:
            self._client.on_foreign_output = foreign_output
            self._client.input_handler = input_handler

    def _connect(self, client: KernelClient) -> None:
        self._client = client
        client.on_status = self._on_status
        client.on_heartbeat = self._watcher.heartbeat_changed
        if self._foreign_output is not None or self._input_handler is not None:
            client.on_foreign_output = self._foreign_output
            client.input_handler = self._input_handler

    def _became_ready(self) -> None:
        if self.manager is not None and self.manager.is_alive():
            self._watcher.watch_process(self.manager.process)
            self._running.set()
        if not self._ready.done():
            self._ready.set_result(None)

    async def serve(self) -> None:
        """Launch the kernel of a :meth:`starting` link, connect, and stay connected.

        Returns after :meth:`shutdown`. A kernel that cannot start makes the
        link ``dead`` and :meth:`wait_ready` raise why; this then returns.
        """
        if self._start is None or self.manager is None:
            raise KernelError("serve() is for links made by KernelLink.starting()")
        # pyzmq is imported here, not with this module: the console's first
        # prompt does not need it (see shell.console._startup).
        from kernel import connect_client

        self._serving = asyncio.current_task()
        manager = self.manager
        try:
            info = await self._start()
            async with connect_client(info, wait_ready=False) as client:
                self._connect(client)
                await manager.wait_ready(client)
                if self._override == STARTING:
                    self._kernel_state = IDLE
                    self._set_override(None)
                self._became_ready()
                await self._closed.wait()
        except KernelError as exc:
            self._override = DEAD
            if not self._ready.done():
                self._ready.set_exception(exc)
            self.on_change()
        finally:
            if not self._ready.done():  # cancelled before the kernel answered
                self._ready.set_exception(KernelError(f"kernel {self.name!r} was not started"))
            self._ready.exception()  # retrieved: nobody need be waiting for it
            self._client = None

    # -- state ------------------------------------------------------------------

    @property
    def owns_kernel(self) -> bool:
        """True when the console started the kernel (and so may restart and stop it)."""
        return self.manager is not None

    @property
    def state(self) -> str:
        """One of the module's states (see the module docstring)."""
        return self._override or self._kernel_state

    @property
    def is_dead(self) -> bool:
        return self._override == DEAD

    @property
    def is_usable(self) -> bool:
        """True when requests can be expected to be answered promptly."""
        return self._override is None

    def _set_override(self, value: str | None) -> None:
        if value != self._override:
            self._override = value
            self.on_change()

    def _on_status(self, state: str, message: Message) -> None:
        parent_type = message.parent_header.get("msg_type")
        # After "starting" any status counts: a fresh kernel may run no cell for a while.
        relevant = STARTING in (state, self._kernel_state) or parent_type == "execute_request"
        if relevant and state != self._kernel_state:
            self._kernel_state = state
            if self._override is None:
                self.on_change()

    # -- watching -----------------------------------------------------------------

    async def watch(self) -> None:
        """Watch the kernel for death (:class:`~kernel.client.KernelWatcher`: the
        process of a kernel we started, the heartbeat and its port for an
        attached one); run as a task for the link's lifetime, until cancelled.

        Exits caused by :meth:`restart` or :meth:`shutdown` are not deaths:
        those clear ``_running`` before they stop the process.
        """
        await self._watcher.run()

    def _on_watch(self, event: WatchEvent) -> None:
        match event:
            case KernelExited(reason, code):
                if self.owns_kernel and not self._running.is_set():
                    return  # an exit we caused
                self._running.clear()
                self._declare_dead(
                    f"Kernel {reason}." if code is not None else f"The kernel {reason}: it died."
                )
            case HeartbeatLost(reason):
                if self._override is None:
                    self._set_override(NOT_RESPONDING)
                    self.on_notice(f"The kernel is not responding: it {reason}.")
            case HeartbeatBack():
                if self._override == NOT_RESPONDING:
                    self._set_override(None)
                    self.on_notice("The kernel is answering again.")
                elif self._override == DEAD and not self.owns_kernel:
                    # An attached kernel's owner may restart it on the same ports.
                    self._set_override(None)
                    self.on_notice("The kernel is answering again (restarted by its owner?).")

    def _declare_dead(self, what: str) -> None:
        self._kernel_state = IDLE
        self._set_override(DEAD)
        if self._client is not None:
            self._client.fail_pending(KernelDied(what))
        self.on_notice(f"{what} {self.death_hint}".strip())

    # -- actions ------------------------------------------------------------------

    async def interrupt(self) -> None:
        """Interrupt the running cell: by signal (as the kernelspec says) for a
        kernel we started, by ``interrupt_request`` for an attached one.

        Never raises for a dead or silent kernel (the request is abandoned
        after a second): Ctrl-C must not crash the console.
        """
        try:
            if self.manager is not None:
                async with asyncio.timeout(1.0):
                    await self.manager.interrupt(self.client)
            else:
                await self.client.interrupt(timeout=1.0)
        except (KernelError, TimeoutError):
            pass

    async def restart(self) -> None:
        """Replace a kernel we started with a new one; wait until it answers.

        Raises :class:`KernelError` for an attached kernel, or
        :class:`~kernel.KernelStartError` if the new kernel fails to start (the
        state is then ``dead``).
        """
        if self.manager is None:
            raise KernelError("this console did not start the kernel, so it cannot restart it")
        client = self.client  # KernelError while the kernel is still starting
        # A dead or silent kernel cannot answer a shutdown_request: do not wait for it.
        silent = self._override in (DEAD, NOT_RESPONDING)
        self._running.clear()
        self._watcher.watch_process(None)
        self._set_override(RESTARTING)
        try:
            await self.manager.restart(client, now=silent)
        except BaseException:
            self._set_override(DEAD)
            raise
        self._kernel_state = IDLE
        self._watcher.watch_process(self.manager.process)
        self._running.set()
        self._set_override(None)

    async def shutdown(self) -> None:
        """Stop a kernel we started (politely, then by force); no-op when attached.

        A kernel still starting is not waited for: its launch is cancelled
        (which kills it) and :meth:`serve` returns.
        """
        self._running.clear()
        self._watcher.watch_process(None)
        serving = self._serving
        try:
            if self.manager is None:
                return
            if not self.is_ready and serving is not None and not serving.done():
                serving.cancel()
                await asyncio.wait({serving})
            if self._client is not None:
                await self.manager.shutdown(self._client, timeout=2.0, now=self.is_dead)
            else:
                await self.manager.shutdown(now=True)
        finally:
            self._closed.set()
