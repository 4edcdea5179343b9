"""Reading the client's sockets without a thread: blocking, or on the caller's loop.

Theory of operation
-------------------
The client owns plain ZeroMQ sockets (no ``zmq.asyncio``: they must work with no loop
at all). Each socket has a handler for the frames it receives. Two drivers read them:

- :meth:`Pump.pump` blocks in an ``epoll`` of the sockets' file descriptors until one
  fires or the timeout passes, then drains the sockets whose descriptor fired: what
  ``AsyncResult.get()`` and the ``*_sync`` methods use, in a script or inside a running
  kernel cell alike. (``zmq_poll`` asked every socket for ``ZMQ_EVENTS`` at every call,
  two system calls each: 4 per engine per wait, 130 a wait with 16 engines.);
- :meth:`Pump.wait_until` runs on the caller's asyncio loop: it watches the sockets'
  file descriptors with ``loop.add_reader`` and drains when one fires: what ``await``
  uses. ZeroMQ descriptors are edge-triggered (they signal that ``ZMQ_EVENTS`` may have
  changed), so every wake drains each socket until ``EAGAIN`` and looks again.

Both rely on the same rule for edges: a descriptor fires when a socket's state may have
changed, reading ``ZMQ_EVENTS`` re-arms it, and any other call on the socket (a send)
may consume an edge without reading. So a socket is drained until ``ZMQ_EVENTS`` shows
no input, every send is followed by :meth:`Pump.sent_on` (the socket is looked at before
the next wait), and a socket left with input (``DRAIN_BATCH`` reached) is looked at
again too. A blocking wait that times out still reads every socket once: a missed edge
costs at most ``TICK``, never a hang.

Streams (an engine's direct shell, ``_direct_link``: a plain Unix socket) are read the
same two ways (:meth:`Pump.add_stream`), without the edge rules: their descriptors are
level-triggered, and a stream with bytes still to write is also watched for room
(:meth:`Pump.sent_on_stream`).

Handlers run on the caller's thread, inside ``pump``/``wait_until``; they must not block.
While someone waits, :attr:`Pump.on_tick` is called at least every :data:`TICK` seconds
(the client checks its engines' heartbeats there): waiting never outlasts a dead peer.
"""

from __future__ import annotations

import asyncio
import select
import time
from collections.abc import Callable, Iterable
from typing import Any

import zmq
from zmq.backend import zmq_poll

from kernel.transport._frames import recv_frames

from .._errors import ClientClosed
from ._direct_link import DirectClosed, DirectLink

__all__ = ["FrameHandler", "Pump"]

FrameHandler = Callable[[list[bytes]], None]
#: Called with the reason once a stream is gone (its owner removes it).
ClosedHandler = Callable[[str], None]
#: ``[(socket, POLLIN)]``: what ``zmq_poll`` asks of one socket.
_PollItems = list[tuple[zmq.Socket[bytes], int]]

_POLLIN = int(zmq.POLLIN)

#: At most this many messages are read from one socket per drain before moving on to
#: the next, so one busy engine cannot starve the others.
DRAIN_BATCH = 256

#: While a caller waits, :attr:`Pump.on_tick` runs at least this often (seconds) ...
TICK = 0.5
#: ... and at most this often: it looks at every engine (heartbeats, the balancer's
#: deadlines, the controller), which after every wake cost more than the wake's reading
#: on 16 engines; nothing it checks needs a finer clock than this.
TICK_GAP = 0.05


class Pump:
    """The sockets a client reads, and the two ways to read them."""

    def __init__(self) -> None:
        self._handlers: dict[zmq.Socket[bytes], FrameHandler] = {}
        #: Each socket's ``zmq_poll`` items, made once (``_drain_one``).
        self._items: dict[zmq.Socket[bytes], _PollItems] = {}
        #: The sockets' descriptors, for blocking waits (see the module docstring).
        self._epoll = select.epoll()
        self._by_fd: dict[int, zmq.Socket[bytes]] = {}
        self._fds: dict[zmq.Socket[bytes], int] = {}
        #: Sockets that may hold input their descriptor will not announce (sent on, new,
        #: or left with input): looked at before the next blocking wait.
        self._unsure: set[zmq.Socket[bytes]] = set()
        #: Futures of ``wait_until`` calls asleep on the loop.
        self._sleepers: set[asyncio.Future[None]] = set()
        #: The loop whose selector watches the sockets' descriptors, if any.
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Called while a caller waits, at least every ``TICK`` seconds.
        self.on_tick: Callable[[], None] = lambda: None
        self._ticked = 0.0  # when on_tick last ran (monotonic seconds)
        self._closed = False
        #: Streams by descriptor: the link, its frames' handler, what to call once it is gone.
        self._streams: dict[int, tuple[DirectLink, FrameHandler, ClosedHandler]] = {}
        #: Streams watched for room to write (bytes left in their outbox).
        self._writing: set[int] = set()

    def add(self, sock: zmq.Socket[bytes], handler: FrameHandler) -> None:
        self._handlers[sock] = handler
        self._items[sock] = [(sock, _POLLIN)]
        fd = self._fds[sock] = int(sock.getsockopt(zmq.FD))
        self._by_fd[fd] = sock
        self._epoll.register(fd, select.EPOLLIN)
        self._unsure.add(sock)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.add_reader(fd, self._on_readable)

    def remove(self, sock: zmq.Socket[bytes]) -> None:
        if self._handlers.pop(sock, None) is not None:
            del self._items[sock]
            fd = self._fds.pop(sock)
            self._epoll.unregister(fd)
            del self._by_fd[fd]
            self._unsure.discard(sock)
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(fd)

    def add_stream(self, link: DirectLink, handler: FrameHandler, closed: ClosedHandler) -> None:
        fd = link.fileno()
        self._streams[fd] = (link, handler, closed)
        self._epoll.register(fd, select.EPOLLIN)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.add_reader(fd, self._on_stream_readable, fd)

    def remove_stream(self, link: DirectLink) -> None:
        fd = link.fileno()
        if self._streams.pop(fd, None) is None:
            return
        self._writing.discard(fd)
        if not self._closed:
            self._epoll.unregister(fd)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)

    def sent_on_stream(self, link: DirectLink) -> None:
        """Call after sending on ``link``: bytes it could not write yet are written as the
        socket takes them, while anyone pumps."""
        fd = link.fileno()
        if link.outbox and fd not in self._writing and fd in self._streams:
            self._writing.add(fd)
            self._epoll.modify(fd, select.EPOLLIN | select.EPOLLOUT)
            if self._loop is not None and not self._loop.is_closed():
                self._loop.add_writer(fd, self._on_stream_writable, fd)

    def _service_stream(self, fd: int, events: int = select.EPOLLIN) -> int:
        """Write what waits (if there is room) and read what came; messages read."""
        entry = self._streams.get(fd)
        if entry is None:
            return 0
        link, handler, closed = entry
        try:
            if events & select.EPOLLOUT or fd in self._writing:
                link.flush()
                if not link.outbox and fd in self._writing:
                    self._writing.discard(fd)
                    self._epoll.modify(fd, select.EPOLLIN)
                    if self._loop is not None and not self._loop.is_closed():
                        self._loop.remove_writer(fd)
            messages = link.read() if events & ~select.EPOLLOUT else []
        except DirectClosed as exc:
            closed(str(exc))  # the owner removes the stream
            return 0
        for frames in messages:
            handler(frames)
        return len(messages)

    def _drain_streams(self) -> int:
        return sum(self._service_stream(fd) for fd in list(self._streams))

    def _on_stream_readable(self, fd: int) -> None:
        self._service_stream(fd)
        self._wake()

    def _on_stream_writable(self, fd: int) -> None:
        self._service_stream(fd, select.EPOLLOUT)

    def sent_on(self, sock: zmq.Socket[bytes]) -> None:
        """Call after sending on ``sock``: a send can consume the edge that announced input,
        so the next blocking wait looks at it first, and if input is waiting, the loop's
        waiters are woken to drain it."""
        self._unsure.add(sock)
        if self._loop is not None and _with_input([sock]):
            self._loop.call_soon(self._on_readable)

    def drain(self, *only: zmq.Socket[bytes]) -> int:
        """Read every message that is ready on every socket (or on the sockets ``only``);
        how many were read."""
        count = 0
        more = True
        while more:
            more = False
            for sock, handler in list(self._handlers.items()):
                if sock not in self._handlers:  # a handler before it removed it (and closed it)
                    continue
                if only and sock not in only:
                    continue
                n = _drain_one(sock, handler, False, self._items[sock])
                count += n
                more = more or n == DRAIN_BATCH
        if not only:
            self._unsure.clear()
            count += self._drain_streams()
        return count

    def read_ready(self, *socks: zmq.Socket[bytes]) -> int:
        """Read what is waiting on ``socks`` now; how many messages. Cheaper than
        ``drain(*socks)``: one ``epoll_wait`` says whose descriptors fired, and only those
        and the ones that may hold input without an edge (:meth:`sent_on`) are asked for
        input (two system calls a socket), the others cannot hold any (module docstring)."""
        self.check_open()
        fired = {fd for fd, _ in self._epoll.poll(0.0)}
        fds, unsure = self._fds, self._unsure
        count = self._read_unsure([s for s in socks if s in unsure])
        return count + self._read([s for s in socks if fds.get(s) in fired], fired=True)

    def pump(self, timeout: float | None) -> int:
        """Wait up to ``timeout`` seconds (``None``: no limit) for input, then read it.

        The sockets that may hold input without an edge (module docstring) are read
        first; if they held some, nothing is waited for.
        """
        self.check_open()
        count = self._read_unsure(list(self._unsure)) if self._unsure else 0
        wait = -1.0 if timeout is None else max(0.0, timeout)
        ready = self._epoll.poll(0.0 if count else wait)
        if not ready and not count and wait != 0.0:  # a whole wait and not a word: read all
            return self.drain()
        by_fd, streams = self._by_fd, self._streams
        for fd, events in ready:
            if fd in streams:
                count += self._service_stream(fd, events)
        return count + self._read([by_fd[fd] for fd, _ in ready if fd in by_fd], fired=True)

    def _read_unsure(self, socks: list[zmq.Socket[bytes]]) -> int:
        """Drain those of ``socks`` (sockets that may hold input without an edge) that hold
        input: one ``zmq_poll`` reads every one's ``ZMQ_EVENTS`` (which re-arms their
        descriptors), a third of asking each in turn (after a broadcast, every engine's
        shell socket is unsure until the next wait)."""
        unsure, handlers = self._unsure, self._handlers
        for sock in socks:
            unsure.discard(sock)
        return self._read(_with_input(s for s in socks if s in handlers), fired=True)

    def _read(self, socks: list[zmq.Socket[bytes]], *, fired: bool = False) -> int:
        """Drain ``socks``; ``fired``: their descriptors fired, so each most likely holds
        a message and is read without asking ``ZMQ_EVENTS`` first (``_drain_one``)."""
        count = 0
        for sock in socks:
            self._unsure.discard(sock)
            handler = self._handlers.get(sock)  # None: removed by an earlier handler
            if handler is not None:
                n = _drain_one(sock, handler, fired, self._items[sock])
                if n == DRAIN_BATCH:
                    self._unsure.add(sock)  # left with input: its edge is spent
                count += n
        return count

    def pump_until(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Pump until ``done()`` or ``timeout`` seconds passed; returns ``done()``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self.pump(TICK if remaining is None else min(TICK, remaining))
            self._tick()
        return done()

    def _tick(self) -> None:
        """``on_tick()``, unless it ran less than ``TICK_GAP`` seconds ago."""
        now = time.monotonic()
        if now - self._ticked >= TICK_GAP:
            self._ticked = now
            self.on_tick()

    async def wait_until(self, done: Callable[[], bool]) -> None:
        """On the running loop, drain whenever a socket may be readable, until ``done()``.

        Bound it with ``asyncio.timeout``; cancelling leaves every socket as it was.
        """
        self.check_open()
        self._watch(asyncio.get_running_loop())
        while True:
            self.drain()
            if done():
                return
            woken = asyncio.get_running_loop().create_future()
            self._sleepers.add(woken)
            try:
                await asyncio.wait([woken], timeout=TICK)
            finally:
                self._sleepers.discard(woken)
                woken.cancel()
            if done():  # a close fails the results still pending: theirs is the error
                return
            self.check_open()
            self._tick()

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drain from ``loop`` whenever a socket's descriptor fires (once per loop)."""
        if self._loop is loop:
            return
        self.unwatch()
        self._loop = loop
        for sock in self._handlers:
            loop.add_reader(int(sock.getsockopt(zmq.FD)), self._on_readable)
        for fd in self._streams:
            loop.add_reader(fd, self._on_stream_readable, fd)
        for fd in self._writing:
            loop.add_writer(fd, self._on_stream_writable, fd)

    def close(self) -> None:
        """Stop watching everything (the client is closing); waits from now on raise
        :class:`ClientClosed`, and those asleep on a loop are woken to raise it."""
        self._closed = True
        self.unwatch()
        self._epoll.close()
        self._wake()

    def check_open(self) -> None:
        """:class:`ClientClosed` once :meth:`close` ran: its sockets and ``epoll`` are gone."""
        if self._closed:
            raise ClientClosed(
                "this Client is closed (Client.close() ran): connect a new one,"
                " e.g. parallel.Client(), to send tasks or wait for results"
            )

    def unwatch(self) -> None:
        """Stop watching the descriptors (closing, or the loop is gone)."""
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            for sock in self._handlers:
                loop.remove_reader(int(sock.getsockopt(zmq.FD)))
            for fd in self._streams:
                loop.remove_reader(fd)
                loop.remove_writer(fd)

    def _on_readable(self) -> None:
        # Draining here, not in the waiter, reads ZMQ_EVENTS and so re-arms the descriptor:
        # left readable, it would make the (level-triggered) selector spin.
        self.drain()
        self._wake()

    def _wake(self) -> None:
        for sleeper in self._sleepers:
            if not sleeper.done():
                sleeper.set_result(None)


def _with_input(socks: Iterable[zmq.Socket[bytes]]) -> list[zmq.Socket[bytes]]:
    """Those of ``socks`` (the open ones) that hold a message, by their ``ZMQ_EVENTS``,
    which reading re-arms their descriptors: one ``zmq_poll`` for all (pyzmq's
    ``getsockopt`` looks the option up in an ``Enum`` at every call: 3.2 us a socket
    here, against 1.9 us for one socket and 4.1 us for four by ``zmq_poll``)."""
    items = [(sock, _POLLIN) for sock in socks if not sock.closed]
    if not items:
        return []
    ready: list[tuple[Any, int]] = zmq_poll(items, 0)  # the sockets given, as given
    return [sock for sock, _ in ready]


def _drain_one(
    sock: zmq.Socket[bytes], handler: FrameHandler, fired: bool, items: _PollItems
) -> int:
    """Read and handle up to ``DRAIN_BATCH`` messages; ends with ``ZMQ_EVENTS`` read (which
    re-arms the descriptor) unless the batch is full or a recv found nothing.

    Asking ``ZMQ_EVENTS`` before a recv is much cheaper than a recv that raises
    ``zmq.Again``, so it is asked first, except for the first message of a socket whose
    descriptor ``fired``: that edge announces a message nearly always (libzmq signals a
    pipe that turns readable; a stray command is the exception, costing one ``Again``),
    and the check before it was a tenth of reading a reply (a ``getsockopt`` through
    pyzmq's option lookup, two per reply before). ``items``: the socket's ``zmq_poll``
    items, how ``ZMQ_EVENTS`` is read (``_with_input``)."""
    for count in range(DRAIN_BATCH):
        if sock.closed:  # its own handler closed it (an engine was lost)
            return count
        if not fired and not zmq_poll(items, 0):
            return count
        fired = False
        try:
            frames = recv_frames(sock)  # large buffers (a pulled array) without a copy
        except zmq.Again:
            return count
        handler(frames)
    return DRAIN_BATCH
