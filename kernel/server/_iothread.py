"""The kernel's I/O thread: everything that must keep answering while user code runs.

User code runs on the main thread and may block it for minutes. This one
thread owns the sockets that must stay live meanwhile:

* **iopub** (XPUB): every message the main thread publishes is queued here and
  sent in order; buffered stream text is flushed within ``FLUSH_INTERVAL``
  even while the main thread is blocked; each new subscription is greeted with
  ``iopub_welcome`` (messaging spec 5.5) so a late subscriber loses nothing.
* **control** (ROUTER): ``kernel_info``, ``interrupt_request`` and
  ``shutdown_request`` are answered here, never queued behind a running cell.
* **captured file descriptors 1 and 2**: output that C extensions and child
  processes write straight to the fds arrives as ``stream`` messages.

Sending on iopub happens under one lock, from whichever thread publishes:
the main thread sends its messages itself instead of handing them over.
Waking this thread for every message made the two threads trade the GIL
three times per request (measured: ~0.1 ms per hand-over). ZeroMQ sockets
may be shared between threads when a mutex serializes every use (the mutex
is the memory barrier the ZeroMQ guide asks for); this thread therefore
polls the iopub socket's *file descriptor*, never the socket itself, and
takes the lock to read subscriptions. The control socket is this thread's
alone.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stubs; see IOThread._send
import codecs
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from .._transport import RateLimitedLog
from ..protocol import JSONDict, Message, ProtocolError, Session

__all__ = ["FLUSH_INTERVAL", "IOThread"]

log = logging.getLogger("loom.kernel")

#: Stream text is held at most this long before it is published (seconds).
FLUSH_INTERVAL = 0.02
#: Text that starts a burst (none sent for ``FLUSH_INTERVAL``) goes out after only
#: this long: a front end sees the first line at once, a flood is still batched.
FIRST_FLUSH = 0.002
#: Before the first subscription, hold at most this many iopub messages, this long.
HOLD_MESSAGES = 10_000
HOLD_SECONDS = 30.0
#: A stream message is sealed once it holds this much text, bounding message size.
MAX_STREAM_CHUNK = 1 << 20
#: ``drain_fds`` reads at most this many 64 KiB chunks per captured fd.
_MAX_DRAIN_READS = 64


@dataclass(slots=True)
class _StreamBuffer:
    parent: JSONDict
    chunks: list[str] = field(default_factory=list)
    size: int = 0
    due: float = 0.0


ControlHandler = Callable[[Message], JSONDict | None]


class IOThread:
    """Owns iopub and control; see the module docstring for the contract."""

    def __init__(
        self,
        session: Session,
        iopub: zmq.Socket[bytes],
        control: zmq.Socket[bytes],
        *,
        control_session: Session,
        capture_fds: bool = True,
    ) -> None:
        self.session = session
        self._control_session = control_session
        self._iopub = iopub
        self._control = control
        self.control_handlers: dict[str, ControlHandler] = {}
        #: Parent header for output that has no better parent (fd output, threads).
        self.current_parent: JSONDict = {}
        self._lock = threading.Lock()  # guards _streams and every use of _iopub
        # Until the first client subscribes, iopub messages are held rather than
        # dropped by XPUB: a client that sends a request as soon as it has a
        # kernel_info reply (jupyter console does) may not have subscribed yet,
        # and would wait forever for the idle it never saw.
        self._held: list[list[bytes]] | None = []
        self._hold_until = time.monotonic() + HOLD_SECONDS
        self._streams: dict[str, _StreamBuffer] = {}
        self._last_stream_at = 0.0
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stopping = False
        self._rejected = RateLimitedLog(log)
        self._pipes: dict[int, tuple[str, codecs.IncrementalDecoder]] = {}
        self._pipe_lock = threading.Lock()  # taken before _lock, never after
        self.original_fds: dict[str, int] = {}
        if capture_fds:
            self._capture_fds()
        self._thread = threading.Thread(target=self._run, name="loom-io", daemon=True)
        #: Called on this thread when the process that started the kernel exits.
        self.on_parent_exit: Callable[[], None] | None = None
        self._parent_fd = _open_parent_pidfd()

    # -- API for any thread ---------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def publish(self, message: Message) -> None:
        """Send ``message`` on iopub now, after any stream text written before it."""
        with self._lock:
            self._seal_all()
            self._send(message)
            # Sending may have consumed the fd edge that announces a new
            # subscription; if one is waiting, let the thread greet it.
            pending = int(self._iopub.getsockopt(zmq.EVENTS)) & zmq.POLLIN
        if pending:
            self._wake()

    def publish_new(self, msg_type: str, content: JSONDict, parent: JSONDict) -> None:
        self.publish(self.session.message(msg_type, content, parent=parent))

    def write_stream(self, name: str, text: str, parent: JSONDict | None = None) -> None:
        """Buffer stream text; it is published within ``FLUSH_INTERVAL``."""
        if not text:
            return
        if parent is None:
            parent = self.current_parent
        wake = False
        with self._lock:
            buf = self._streams.get(name)
            if buf is not None and buf.parent is not parent:
                self._seal(name)
                buf = None
            if buf is None:
                now = time.monotonic()
                quiet = now - self._last_stream_at >= FLUSH_INTERVAL
                due = now + (FIRST_FLUSH if quiet else FLUSH_INTERVAL)
                buf = self._streams[name] = _StreamBuffer(parent, due=due)
                wake = True  # the thread must arm its flush timer
            buf.chunks.append(text)
            buf.size += len(text)
            if buf.size >= MAX_STREAM_CHUNK:
                self._seal(name)
        if wake:
            self._wake()

    def flush(self) -> None:
        """Publish buffered stream text now (without waiting for the timer)."""
        with self._lock:
            self._seal_all()

    def stop(self, timeout: float = 2.0) -> None:
        """Flush buffered output, then end the thread."""
        self.flush()
        self._stopping = True
        self._wake()
        self._thread.join(timeout)

    # -- internals (lock held) -----------------------------------------------

    def _send(self, message: Message) -> None:
        frames = self.session.serialize(message)
        if self._held is not None:
            if len(self._held) < HOLD_MESSAGES and time.monotonic() < self._hold_until:
                self._held.append(frames)
                return
            self._release_held()  # nobody came in time: stop holding
        self._send_frames(frames)

    def _release_held(self) -> None:
        held, self._held = self._held or [], None
        for frames in held:
            self._send_frames(frames)

    def _send_frames(self, frames: list[bytes]) -> None:
        if threading.current_thread() is not threading.main_thread():
            self._iopub.send_multipart(frames)
            return
        # pyzmq runs signal handlers after every frame it sends: a SIGINT there raises
        # KeyboardInterrupt between the frames of one message, and the half-sent multipart
        # message corrupts the next one. Hold SIGINT back during the send; it is delivered
        # when the mask is restored. (The helper threads block SIGINT for good, so it
        # cannot be taken by one of them meanwhile.)
        # _signal's C function, not signal's Python wrapper: the deferred KeyboardInterrupt
        # then lands in a hidden kernel frame, so the user's traceback shows their own line.
        blocked = _signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self._iopub.send_multipart(frames)
        finally:
            _signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _seal(self, name: str) -> None:
        self._last_stream_at = time.monotonic()
        buf = self._streams.pop(name)
        content = {"name": name, "text": "".join(buf.chunks)}
        self._send(self.session.message("stream", content, parent=buf.parent))

    def _seal_all(self) -> None:
        for name in list(self._streams):
            self._seal(name)

    def _wake(self) -> None:
        os.eventfd_write(self._wake_fd, 1)

    # -- fd capture -----------------------------------------------------------

    def _capture_fds(self) -> None:
        for fd, name in ((1, "stdout"), (2, "stderr")):
            self.original_fds[name] = os.dup(fd)
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            os.dup2(write_end, fd)
            os.close(write_end)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            self._pipes[read_end] = (name, decoder)

    def drain_fds(self) -> None:
        """Publish now what was written to fds 1 and 2 so far (by C code, child processes).

        The server calls this as a request ends, so such output belongs to the
        request that wrote it and precedes its ``idle``; left to the thread, it
        could arrive after the idle, attributed to a finished request.
        """
        for fd in self._pipes:
            for _ in range(_MAX_DRAIN_READS):  # bounded: a background writer may never stop
                if not self._drain_pipe(fd):
                    break
        self.flush()

    def _drain_pipe(self, fd: int) -> bool:
        """Read one chunk from a capture pipe into its stream; False if it was empty."""
        name, decoder = self._pipes[fd]
        with self._pipe_lock:  # the thread and drain_fds() both read: keep chunks in order
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                return False
            self.write_stream(name, decoder.decode(data))
        return bool(data)

    # -- the thread -------------------------------------------------------------

    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # SIGINT is the main thread's
        poller = zmq.Poller()
        iopub_fd = self._iopub.getsockopt(zmq.FD)
        poller.register(self._wake_fd, zmq.POLLIN)
        poller.register(self._control, zmq.POLLIN)
        poller.register(iopub_fd, zmq.POLLIN)
        for fd in self._pipes:
            poller.register(fd, zmq.POLLIN)
        if self._parent_fd is not None:
            poller.register(self._parent_fd, zmq.POLLIN)
        while True:
            timeout = self._next_flush_in()
            events = dict(poller.poll(None if timeout is None else max(0, int(timeout * 1000) + 1)))
            if self._wake_fd in events:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake_fd)
            if self._control in events:
                self._serve_control()
            if self._parent_fd is not None and self._parent_fd in events:
                # Our parent (the console or manager that started us) is gone, maybe
                # killed: nobody can shut us down any more, so stop now (ipykernel
                # does the same, with a polling thread).
                poller.unregister(self._parent_fd)
                os.close(self._parent_fd)
                self._parent_fd = None
                log.warning("the process that started this kernel exited; shutting down")
                if self.on_parent_exit is not None:
                    self.on_parent_exit()
            for fd in self._pipes:
                if fd in events:
                    self._drain_pipe(fd)
            with self._lock:
                self._flush_due(everything=self._stopping)
                # After the flush: its sends may have consumed the edge announcing a
                # subscription, and greeting drains until ZMQ_EVENTS shows none left.
                self._greet_subscribers()
            if self._stopping:
                return

    def _next_flush_in(self) -> float | None:
        with self._lock:
            if not self._streams:
                return None
            due = min(buf.due for buf in self._streams.values())
        return due - time.monotonic()

    def _flush_due(self, everything: bool = False) -> None:
        now = time.monotonic()
        for name, buf in list(self._streams.items()):
            if everything or now >= buf.due:
                self._seal(name)

    def _greet_subscribers(self) -> None:
        # The iopub fd signals edges, not levels: drain everything readable.
        while int(self._iopub.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            frame = self._iopub.recv(zmq.NOBLOCK)
            if frame[:1] == b"\x01":
                topic = frame[1:].decode("utf-8", "replace")
                # The greeting answers this subscription, not a request: no parent.
                welcome = self.session.message("iopub_welcome", {"subscription": topic})
                self._send_frames(self.session.serialize(welcome))
                self._release_held()

    def _serve_control(self) -> None:
        while True:
            try:
                frames = self._control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                received = self._control_session.deserialize(frames)
            except ProtocolError as exc:
                self._rejected.warning("dropped invalid message on control: %s", exc)
                continue
            self._handle_control(received.identities, received.message)

    def _handle_control(self, identities: list[bytes], request: Message) -> None:
        handler = self.control_handlers.get(request.msg_type)
        if handler is None:
            self._rejected.warning("unsupported control message %r", request.msg_type)
            return
        self.publish_new("status", {"execution_state": "busy"}, request.header)
        try:
            content = handler(request)
        except Exception as exc:  # a handler bug must not end the control thread
            log.exception("control handler %s failed", request.msg_type)
            content = {"status": "error", "ename": type(exc).__name__, "evalue": str(exc)}
        if content is not None:
            reply_type = request.msg_type.removesuffix("_request") + "_reply"
            reply = self.session.message(reply_type, content, parent=request)
            self._control.send_multipart(self.session.serialize(reply, identities))
        self.publish_new("status", {"execution_state": "idle"}, request.header)


def _open_parent_pidfd() -> int | None:
    """A pidfd for ``$JPY_PARENT_PID`` (set by kernel managers), or None.

    A pidfd becomes readable when that process exits; this needs no polling.
    """
    value = os.environ.get("JPY_PARENT_PID", "")
    if not value.isdigit() or int(value) <= 1:
        return None
    try:
        return os.pidfd_open(int(value))
    except OSError:  # already gone, or no pidfd support: nothing to watch
        return None
