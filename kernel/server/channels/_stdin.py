"""``input()`` and ``getpass()`` answered by the front end over the stdin channel.

User code runs synchronously on the main thread, so the round trip is
synchronous too: send ``input_request`` to the identity of the client whose
request is running, then block on the stdin socket until the answer comes.

Interrupting that wait (issue 15, items 7 and 19)
-------------------------------------------------
An interrupt (SIGINT, from a signal-mode front end or from the control thread
for an ``interrupt_request``) must raise ``KeyboardInterrupt`` at the cell's
``input()`` line, whenever it arrives:

- *Only the wait can be interrupted.* SIGINT is held back (``pthread_sigmask``)
  while a message is sent, received or checked: a ``KeyboardInterrupt`` between
  the frames of a multipart send corrupts the next message, and one inside
  pyzmq or hmac shows the user internals. Held back, it is delivered the moment
  the wait begins.
- *No moment of the wait is deaf.* A signal that lands just before the blocking
  poll starts interrupts no system call, and Python would run its handler only
  once the poll returns: when the user answers. So the wait polls the stdin
  socket *and* a wakeup pipe (``signal.set_wakeup_fd``) into which the C-level
  handler writes at once: the poll always returns.
- *The exception is ours and clean.* Whatever raised it (the interpreter's
  handler in a synchronous cell, or this module on seeing SIGINT in the wakeup
  pipe, e.g. in a cell that awaits), the ``KeyboardInterrupt`` leaves
  :meth:`StdinBridge.request` as a fresh one raised here, a hidden kernel frame:
  the user's traceback ends at their ``input()`` line.

``input()`` called from another thread cannot be interrupted (signals go to the
main thread); it simply waits.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stubs; see _sigint_held
import builtins
import contextlib
import getpass
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import zmq

from kernel.protocol import JSONDict, Message, ProtocolError, Session

__all__ = ["FrontEndInput", "StdinBridge", "StdinNotImplementedError"]


class StdinNotImplementedError(RuntimeError):
    """The front end said it cannot answer input requests (``allow_stdin`` false)."""


@contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT is not delivered inside; one that came meanwhile is delivered on exit.

    ``_signal``'s C function, not ``signal``'s Python wrapper: the deferred
    ``KeyboardInterrupt`` then lands in this (hidden) kernel frame.
    """
    held: set[int] = _signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        _signal.pthread_sigmask(signal.SIG_SETMASK, held)


class StdinBridge:
    def __init__(self, socket: zmq.Socket[bytes], session: Session) -> None:
        self._socket = socket
        self._session = session
        self._wakeup: tuple[int, int] | None = None  # (read, write) ends, made on first use

    def request(
        self,
        prompt: str,
        password: bool,
        parent: JSONDict,
        identities: list[bytes],
        metadata: JSONDict | None = None,
    ) -> str:
        """Ask the front end for a line; raises ``EOFError`` if it sends none, and
        ``KeyboardInterrupt`` (raised here, see the module docstring) on an interrupt.
        ``metadata`` goes in the ``input_request``'s metadata (the debugger's names)."""
        if threading.current_thread() is not threading.main_thread():
            return self._request(prompt, password, parent, identities, None, metadata)
        try:
            with self._wakeup_pipe() as wakeup:
                return self._request(prompt, password, parent, identities, wakeup, metadata)
        except KeyboardInterrupt:
            pass
        # Outside the handler: a fresh exception, without the internals it interrupted.
        raise KeyboardInterrupt

    def _request(
        self,
        prompt: str,
        password: bool,
        parent: JSONDict,
        identities: list[bytes],
        wakeup: int | None,
        metadata: JSONDict | None = None,
    ) -> str:
        with _sigint_held():
            # Drop answers to earlier, abandoned requests (e.g. after an interrupt).
            while self._socket.poll(0):
                self._socket.recv_multipart()
            msg = self._session.message(
                "input_request",
                {"prompt": prompt, "password": password},
                parent=parent,
                metadata=metadata,
            )
            self._socket.send_multipart(self._session.serialize(msg, identities))
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        if wakeup is not None:
            poller.register(wakeup, zmq.POLLIN)
        while True:
            # The one place SIGINT is let in (module docstring).
            ready = dict(poller.poll())
            if wakeup is not None and ready.get(wakeup) and _took_sigint(wakeup):
                raise KeyboardInterrupt
            with _sigint_held():
                answer = self._answer(msg) if ready.get(self._socket) else None
            if answer is not None:
                return answer

    def _answer(self, request: Message) -> str | None:
        """The value of the message waiting on the socket, if it answers ``request``."""
        try:
            frames = self._socket.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        try:
            reply = self._session.deserialize(frames).message
        except ProtocolError:
            return None
        # A late answer to an abandoned request can still arrive now; clients
        # that set no parent (jupyter_client's ``input()``) are taken at their word.
        answers = reply.parent_header.get("msg_id", request.msg_id)
        if reply.msg_type == "input_reply" and answers == request.msg_id:
            return str(reply.content.get("value", ""))
        return None

    @contextmanager
    def _wakeup_pipe(self) -> Iterator[int]:
        """The read end of a pipe the C-level signal handler writes each signal's number
        to, while inside; the previous wakeup fd (asyncio's, if any) is restored after,
        and sent the signal numbers it missed meanwhile."""
        if self._wakeup is None:
            self._wakeup = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        read, write = self._wakeup
        _drain(read)
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        try:
            yield read
        finally:
            signal.set_wakeup_fd(previous)
            missed = _drain(read)
            if previous != -1 and missed:
                with contextlib.suppress(OSError):
                    os.write(previous, missed)

    def installed(self, allow: bool, parent: JSONDict, identities: list[bytes]) -> _Installed:
        """Route ``input``/``getpass`` to the requesting front end for one cell (a context
        manager; a class rather than ``@contextmanager``, whose generator cost an engine's
        execute ~3 us)."""
        return _Installed(FrontEndInput(self, allow, parent, identities))


class _Installed:
    """:meth:`StdinBridge.installed`: ``input``/``getpass`` asking one front end, restored
    on exit."""

    __slots__ = ("_input", "_saved")

    def __init__(self, front_end_input: FrontEndInput) -> None:
        self._input = front_end_input
        self._saved: tuple[Any, Any] | None = None

    def __enter__(self) -> None:
        self._saved = (builtins.input, getpass.getpass)
        builtins.input = self._input
        getpass.getpass = self._input.getpass

    def __exit__(self, *exc_info: object) -> None:
        if self._saved is not None:
            builtins.input, getpass.getpass = self._saved
            self._saved = None


class FrontEndInput:
    """``builtins.input`` while a request runs: asks the front end that sent it.

    Callable like ``input``; :meth:`ask` also sends metadata with the question (the
    debugger sends the names its Tab completion offers). The interpreter's rooms cannot
    import this module (it speaks ZMQ): they find :meth:`ask` on ``builtins.input``.
    """

    def __init__(
        self, bridge: StdinBridge, allow: bool, parent: JSONDict, identities: list[bytes]
    ) -> None:
        self._bridge = bridge
        #: Whether the front end answers input requests (``allow_stdin``).
        self.allowed = allow
        self._parent = parent
        self._identities = identities

    def __call__(self, prompt: Any = "") -> str:
        return self.ask(str(prompt))

    def getpass(self, prompt: str = "Password: ", stream: Any = None) -> str:
        """``getpass.getpass`` while a request runs: a hidden answer from the front end."""
        if not self.allowed:
            raise StdinNotImplementedError("getpass() is not supported by this front end")
        return self._bridge.request(prompt, True, self._parent, self._identities)

    def ask(self, prompt: str, metadata: JSONDict | None = None) -> str:
        if not self.allowed:
            raise StdinNotImplementedError("input() is not supported by this front end")
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        return self._bridge.request(prompt, False, self._parent, self._identities, metadata)


def _drain(fd: int) -> bytes:
    """Everything readable now on non-blocking ``fd``."""
    data = b""
    while True:
        try:
            chunk = os.read(fd, 512)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def _took_sigint(wakeup: int) -> bool:
    """Whether the signals written to ``wakeup`` since it was last read include SIGINT."""
    return signal.SIGINT in _drain(wakeup)
