"""The ZeroMQ seam: the only module of the client side that imports zmq.

:class:`MessageSocket` joins a ZeroMQ socket, read from the asyncio loop, to a protocol
:class:`~kernel.protocol.Session`: ``send`` serializes and signs, ``recv``
returns the next *valid* message. Invalid input is logged (rate-limited) and
dropped, so a peer sending garbage can neither crash a reader nor flood a log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import zmq
import zmq.asyncio

from kernel.protocol import CurveKeys, Message, ProtocolError, Received, Session

from ._curve import HandshakeWatch, connect_curve
from ._frames import has_input, has_large_buffer, recv_frames, send_frames
from ._ratelimit import RateLimitedLog

__all__ = ["MessageSocket", "RateLimitedLog", "shared_context"]

log = logging.getLogger("loom.transport")

#: Seconds between a blocked sender's checks of ZMQ_EVENTS when no edge woke it.
_WRITABLE_RECHECK = 0.05


def shared_context() -> zmq.asyncio.Context:
    """The process-wide asyncio ZeroMQ context (one context, one set of libzmq I/O threads)."""
    return zmq.asyncio.Context.instance()


class _Wake:
    """What :meth:`MessageSocket.recv` awaits: a future-like object (asyncio's duck-typed
    Future protocol, as a ``Task`` uses it) that the socket's reader callback resolves
    by running the waiting task's next step at once.

    Why not an ``asyncio.Event``: setting one schedules the task's wake-up for the
    loop's next iteration (a callback handle, an ``epoll_wait`` that returns at once,
    the handle's run), about 10 us per message on an engine or a kernel, whose shell
    loop is woken once per request. Called from the reader callback, no task is running,
    so the waiting task can step right there; called from inside a task (a send that
    found input), the step is scheduled as a future's would be: tasks never nest.
    Cancelling (a timeout around ``recv``) wakes the task with ``CancelledError``.
    """

    __slots__ = ("_asyncio_future_blocking", "_callbacks", "_cancel_message", "_loop", "_state")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._asyncio_future_blocking = False
        self._callbacks: list[tuple[Any, Any]] = []
        self._state = 0  # 0 waiting, 1 woken, 2 cancelled
        self._cancel_message: Any = None

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def done(self) -> bool:
        return self._state != 0

    def cancelled(self) -> bool:
        return self._state == 2

    def result(self) -> None:
        if self._state == 2:
            message = self._cancel_message
            raise asyncio.CancelledError() if message is None else asyncio.CancelledError(message)
        if self._state == 0:
            raise asyncio.InvalidStateError("not woken yet")

    def exception(self) -> BaseException | None:
        self.result()
        return None

    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        if self._state:
            self._loop.call_soon(fn, self, context=context)
        else:
            self._callbacks.append((fn, context))

    def remove_done_callback(self, fn: Any) -> int:
        kept = [(f, c) for f, c in self._callbacks if f != fn]
        removed, self._callbacks = len(self._callbacks) - len(kept), kept
        return removed

    def cancel(self, msg: Any = None) -> bool:
        if self._state:
            return False
        self._state, self._cancel_message = 2, msg
        self._schedule()
        return True

    def wake(self) -> None:
        """Resolve: the waiting task steps now if no task is running, else next iteration."""
        if self._state:
            return
        self._state = 1
        if asyncio.current_task(self._loop) is not None:
            self._schedule()
            return
        callbacks, self._callbacks = self._callbacks, []
        for fn, context in callbacks:
            if context is None:
                fn(self)
            else:
                context.run(fn, self)

    def _schedule(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for fn, context in callbacks:
            self._loop.call_soon(fn, self, context=context)

    def __await__(self) -> Generator[Any, None, None]:
        if not self._state:
            self._asyncio_future_blocking = True
            yield self
        self.result()


class MessageSocket:
    """A ZeroMQ socket that speaks Jupyter messages on the running asyncio loop.

    It uses a plain (synchronous) socket and the socket's file descriptor
    directly: the reader callback wakes a waiting reader (``_Wake``), and each
    ``recv`` takes the next message while ``ZMQ_EVENTS`` says one is ready, where
    ``zmq.asyncio`` creates and resolves a future per message. A request's
    reply and its iopub messages arrive in bursts, so this halves the
    client's per-request cost. The descriptor is edge-triggered (it signals
    that ``ZMQ_EVENTS`` may have changed), so we read until ``ZMQ_EVENTS`` says
    none is left and re-check it after every send, which can consume an edge.
    """

    def __init__(self, socket: zmq.Socket[bytes], session: Session, channel: str) -> None:
        if socket.sndhwm != 0:
            # send() is synchronous: only a socket that queues without limit never blocks it.
            raise ValueError(f"{channel} socket needs sndhwm=0 to be used by MessageSocket")
        self.socket = socket
        self.session = session
        self.channel = channel
        #: Where refused input is logged (the hub gives its socket one of its own kind).
        self.rejected = RateLimitedLog(log)
        self._inbox: deque[Received] = deque()
        #: Readers waiting in :meth:`recv` (``_Wake``), woken by the reader callback.
        self._waiters: list[_Wake] = []
        self._writable_event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = int(socket.getsockopt(zmq.FD))
        #: What the last ``ZMQ_EVENTS`` read said of input, while nothing since can have
        #: changed it (no receive, no send): None once unknown. A read is a system call or
        #: two in libzmq (and an enum in pyzmq); an engine's task made five (``_input``).
        self._has_input: bool | None = None
        #: How the connection's handshakes end (``connect(watch_handshake=True)``).
        self.handshake: HandshakeWatch | None = None
        #: Other ways in (:meth:`add_route`): replies whose first identity is a key here
        #: are handed to its function instead of this socket.
        self._routes: dict[bytes, Callable[[Message, list[bytes]], None]] = {}

    @classmethod
    def connect(
        cls,
        socket_type: int,
        url: str,
        session: Session,
        channel: str,
        *,
        identity: bytes | None = None,
        context: zmq.Context[Any] | None = None,
        curve: CurveKeys | None = None,
        watch_handshake: bool = False,
    ) -> MessageSocket:
        """A connected socket; with ``curve``, a Curve client of that server; with
        ``watch_handshake``, its :attr:`handshake` is watched from before it connects (a
        refused handshake may not be retried, so a later watch could miss it)."""
        sock: zmq.Socket[bytes] = zmq.Socket(context or shared_context(), socket_type)
        sock.linger = 0
        # No high-water marks on the client side: a PUB or ROUTER peer silently
        # drops what does not fit, and a lost reply or idle hangs a request.
        # Everything queued here answers requests this client chose to send.
        sock.rcvhwm = 0
        sock.sndhwm = 0
        if identity is not None:
            sock.identity = identity
        if socket_type == zmq.SUB:
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        if curve is not None:
            connect_curve(sock, curve)
        watch = HandshakeWatch(sock) if watch_handshake else None
        sock.connect(url)
        connected = cls(sock, session, channel)
        connected.handshake = watch
        return connected

    def end_handshake_watch(self) -> None:
        if self.handshake is not None:
            self.handshake.close()
            self.handshake = None

    def _watch(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            # Woken only for input: the descriptor also signals after a send (ZMQ_EVENTS
            # changed) and stays readable until ZMQ_EVENTS is read, so waking the reader
            # at once cost an engine a second wake of its shell loop per task (a task step
            # through recv, a future, a loop iteration) that found nothing.
            self._loop.add_reader(self._fd, self._fired)

    def _fired(self) -> None:
        """The descriptor fired. With a reader waiting, that edge announces a message
        nearly always (libzmq signals a pipe that turns readable): the reader is woken to
        receive it at once, without asking ``ZMQ_EVENTS`` first, a ``getsockopt`` per
        request on a kernel's or an engine's shell (the receive takes libzmq's commands,
        re-arming the descriptor, as that read would). A stray edge costs the reader one
        ``zmq.Again``, after which it reads ``ZMQ_EVENTS`` (``_drain``, ``recv``)."""
        if not self._waiters:
            self._maybe_readable()
            return
        self._writable_event.set()  # a sender waiting re-checks ZMQ_EVENTS itself
        self._has_input = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.wake()

    def _maybe_readable(self) -> None:
        self._writable_event.set()  # a sender waiting re-checks ZMQ_EVENTS itself
        # ZMQ_EVENTS is read even with no reader waiting: the descriptor stays readable
        # (and the loop's selector keeps calling back) until it is.
        if self._input(known=False) and self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.wake()

    def _input(self, *, known: bool = True) -> bool:
        """Whether a message can be read now. ``known``: an answer from the last
        ``ZMQ_EVENTS`` read is still good, if nothing since could have changed it: input
        stays until it is received, and once a read said none, a message arriving makes
        the descriptor fire (``_maybe_readable`` reads again). A receive or a send (which
        may take libzmq's commands, and with them the edge) makes it unknown."""
        if known and self._has_input is not None:
            return self._has_input
        self._has_input = has_input(self.socket)
        return self._has_input

    def add_route(self, mark: bytes, send: Callable[[Message, list[bytes]], None]) -> None:
        """Messages arriving another way (:meth:`deliver`) carry ``mark`` as their first
        identity; a reply to one, sent here with those identities, goes to ``send``,
        which must not block (an engine's direct shell, ``parallel/engine/_direct.py``)."""
        self._routes[mark] = send

    def deliver(self, received: Received) -> None:
        """Put a message that arrived another way (already verified) in line, and wake a
        reader waiting in :meth:`recv`."""
        self._inbox.append(received)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.wake()

    async def send(self, message: Message, identities: list[bytes] | None = None) -> None:
        """Send; at once unless the socket has no peer to queue for.

        With no send high-water mark (see ``__init__``) a socket with a peer always queues.
        A DEALER or REQ with none blocks in libzmq: one whose Curve handshake was refused
        loses its pipe until it reconnects. Blocking there stopped the loop, so the
        handshake watch that explains the refusal never ran (a console hung on a kernel
        it had no keys for); instead this waits for the socket on the loop.
        """
        if identities and self._routes:
            route = self._routes.get(identities[0])
            if route is not None:
                route(message, identities)
                return
        self._watch()
        zero_copy = bool(message.buffers) and has_large_buffer(message.buffers)
        # Large buffers (a result array) go out without a copy: pyzmq copies frames
        # below its copy_threshold anyway, and passes larger ones to libzmq as they are.
        frames = self.session.serialize(message, identities or (), copy_buffers=not zero_copy)
        self._has_input = None  # the send may take libzmq's commands: read again after
        while True:
            try:
                if zero_copy:
                    self.socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                else:
                    send_frames(self.socket, frames, wait=False)
                break
            except zmq.Again:
                await self._writable()
        self._maybe_readable()

    async def _writable(self) -> None:
        """Return once the socket may take a message, or after a short wait: the descriptor
        is edge-triggered and shared with the reader, so an edge may be missed."""
        assert self._loop is not None  # _watch() ran
        self._writable_event.clear()
        events = self.socket.get(zmq.EVENTS)
        if isinstance(events, int) and events & zmq.POLLOUT:  # ZMQ_EVENTS is an int
            return
        try:
            async with asyncio.timeout(_WRITABLE_RECHECK):
                await self._writable_event.wait()
        except TimeoutError:
            pass

    async def recv(self) -> Received:
        """The next valid message; invalid ones are logged and skipped."""
        self._watch()
        while not self._inbox:
            self._drain()
            if self._inbox:
                break
            assert self._loop is not None  # _watch() ran
            waiter = _Wake(self._loop)
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:  # cancelled (a timeout): not woken
                    self._waiters.remove(waiter)
        return self._inbox.popleft()

    def requeue(self, received: list[Received]) -> None:
        """Put messages that someone else read from this socket first in line."""
        self._inbox.extendleft(reversed(received))

    def _drain(self) -> None:
        """Receive the next valid message, if one is waiting, into the inbox.

        One per call: whether more wait behind it is asked by the next ``recv``, which on
        a server (a kernel's or an engine's shell loop) comes after the reply's send has
        read ``ZMQ_EVENTS`` anyway, so that answer is reused: one read per request fewer.
        """
        # Asking ZMQ_EVENTS first: a recv that raises zmq.Again costs an exception.
        while self._input():
            self._has_input = None  # more may be queued behind this message
            try:
                frames = recv_frames(self.socket)  # large buffers without a copy
            except zmq.Again:
                return
            try:
                self._inbox.append(self.session.deserialize(frames))
                return
            except ProtocolError as exc:
                self.rejected.warning("dropped invalid message on %s: %s", self.channel, exc)

    def close(self) -> None:
        self.end_handshake_watch()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self.socket.close(linger=0)
