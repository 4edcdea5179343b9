"""``KernelLink``: the console's view of one kernel and its lifecycle.

Theory of operation
-------------------
The console talks to a kernel through a :class:`~kernel.KernelClient`; if it
started the kernel it also holds the :class:`~kernel.KernelManager`. A link
turns what both report into one *state* the rest of the console can show and
act on. It decides nothing itself: it is the thin driver of two deciders.

:class:`~shell.console._link_state.LinkState`
    the lifecycle as a pure state machine (``starting``, ``idle``, ``busy``,
    ``restarting``, ``dead``, ``not responding``: its module docstring has the
    rules and the transition table). The link feeds it past-tense events and
    carries out the actions it returns (:meth:`KernelLink._perform`).
:class:`~kernel.client.KernelWatcher`
    whether the kernel died, the same policy ``loom run`` uses: the pidfd of a
    kernel we started, the heartbeat plus a TCP probe of the heartbeat port for
    an attached one. Its reports become ``ProcessExited``, ``HeartbeatLost`` and
    ``HeartbeatBack`` events.

On death every outstanding request is failed with :class:`~kernel.KernelDied`
(``client.fail_pending``), so no caller waits forever. State changes and
notices go to the front end's ``notice(text)`` and ``change()``
(:meth:`KernelLink.set_handlers`); the link prints nothing.

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

import kernel.client as kernel_client
from kernel import KernelDied, KernelError

from ._link_state import (
    FailPending,
    HeartbeatBack,
    HeartbeatLost,
    KernelAnswered,
    LaunchFailed,
    LaunchStarted,
    LinkAction,
    LinkEvent,
    LinkState,
    ProcessExited,
    ReportChange,
    RestartBegun,
    RestartFailed,
    RestartFinished,
    ShowNotice,
    ShutdownBegun,
    Status,
    StatusChanged,
    UnwatchProcess,
    WatchProcess,
)

if TYPE_CHECKING:
    from kernel import InputHandler, KernelClient, KernelManager
    from kernel.protocol import JSONDict, Message

__all__ = ["KernelLink"]


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
        self._on_notice = on_notice or _ignore_notice
        self._on_change = on_change or _ignore_change
        self._state = LinkState(owns_kernel=manager is not None)
        self._client: KernelClient | None = None
        self._watcher: kernel_client.KernelWatcher | None = None  # made once connected
        self._connected = asyncio.Event()
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
        link._start = manager.start
        link._apply(LaunchStarted())
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
        notice: Callable[[str], None] | None = None,
        change: Callable[[], None] | None = None,
        foreign_output: Callable[[Message, bool], None] | None = None,
        input_handler: InputHandler | None = None,
    ) -> None:
        """The one door for the front end's callbacks; those not given stay as they are.

        ``notice(text)``: something to tell the user; ``change()``: the state
        shown changed. ``foreign_output`` and ``input_handler`` are the
        client's ``on_foreign_output`` and ``input_handler``, set now or once
        it is connected. (A front end is built around its link, so these
        cannot all be constructor arguments.)
        """
        if notice is not None:
            self._on_notice = notice
        if change is not None:
            self._on_change = change
        if foreign_output is not None:
            self._foreign_output = foreign_output
        if input_handler is not None:
            self._input_handler = input_handler
        if self._client is not None:
            self._wire(self._client)

    def _connect(self, client: KernelClient) -> None:
        self._client = client
        # The watcher is made now, not with the link: a launched kernel is connected
        # once the first prompt is drawn, which keeps its import off that path.
        # Attached: its heartbeat port is probed; ours: the process is watched once
        # it answers (WatchProcess).
        info = client.info if self.manager is None else None
        watcher = self._watcher = kernel_client.KernelWatcher(self._on_watch, info=info)
        client.on_status = self._on_status
        client.on_heartbeat = watcher.heartbeat_changed
        self._wire(client)
        self._connected.set()

    def _wire(self, client: KernelClient) -> None:
        """Give ``client`` the front end's handlers (the only writer of these slots)."""
        if self._foreign_output is not None:
            client.on_foreign_output = self._foreign_output
        if self._input_handler is not None:
            client.input_handler = self._input_handler

    def _became_ready(self) -> None:
        self._apply(KernelAnswered())
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
                self._became_ready()
                await self._closed.wait()
        except KernelError as exc:
            self._apply(LaunchFailed())
            if not self._ready.done():
                self._ready.set_exception(exc)
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
    def state(self) -> Status:
        """What to show for the kernel (a ``str``; see :class:`LinkState`)."""
        return self._state.status

    @property
    def is_dead(self) -> bool:
        return self._state.is_dead

    @property
    def is_usable(self) -> bool:
        """True when requests can be expected to be answered promptly."""
        return self._state.is_usable

    @property
    def death_hint(self) -> str:
        """Appended to the death notice (the interactive console says how to restart)."""
        return self._state.death_hint

    @death_hint.setter
    def death_hint(self, text: str) -> None:
        self._state.death_hint = text

    def _apply(self, event: LinkEvent) -> None:
        """Feed ``event`` to the state machine and carry out what it says."""
        for action in self._state.handle(event):
            self._perform(action)

    def _perform(self, action: LinkAction) -> None:
        match action:
            case ReportChange():
                self._on_change()
            case ShowNotice(text):
                self._on_notice(text)
            case FailPending(reason):
                if self._client is not None:
                    self._client.fail_pending(KernelDied(reason))
            case WatchProcess() if self._watcher is not None:
                self._watcher.watch_process(self.manager.process if self.manager else None)
            case UnwatchProcess() if self._watcher is not None:
                self._watcher.watch_process(None)

    def _on_status(self, state: str, message: Message) -> None:
        self._apply(StatusChanged(state, message.parent_header.get("msg_type")))

    # -- watching -----------------------------------------------------------------

    async def watch(self) -> None:
        """Watch the kernel for death (:class:`~kernel.client.KernelWatcher`) from the
        moment it is connected; run as a task for the link's lifetime, until cancelled."""
        await self._connected.wait()
        if self._watcher is not None:  # always, once connected
            await self._watcher.run()

    def _on_watch(self, event: kernel_client.WatchEvent) -> None:
        match event:
            case kernel_client.KernelExited(reason, exit_code):
                self._apply(ProcessExited(reason, exit_code))
            case kernel_client.HeartbeatLost(reason):
                self._apply(HeartbeatLost(reason))
            case kernel_client.HeartbeatBack():
                self._apply(HeartbeatBack())

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
        now = self._state.is_silent
        self._apply(RestartBegun())
        try:
            await self.manager.restart(client, now=now)
        except BaseException:
            self._apply(RestartFailed())
            raise
        self._apply(RestartFinished())

    async def shutdown(self) -> None:
        """Stop a kernel we started (politely, then by force); no-op when attached.

        A kernel still starting is not waited for: its launch is cancelled
        (which kills it) and :meth:`serve` returns.
        """
        self._apply(ShutdownBegun())
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


def _ignore_notice(text: str) -> None:
    """Notices before a front end has set its handler are dropped."""


def _ignore_change() -> None:
    """State changes before a front end has set its handler need no redraw."""
