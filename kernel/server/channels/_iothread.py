"""The kernel's I/O thread: everything that must keep answering while user code runs.

User code runs on the main thread and may block it for minutes. This one
thread owns the sockets that must stay live meanwhile:

* **iopub** (XPUB): every message the main thread publishes is queued here and
  sent in order; buffered stream text is flushed within ``FLUSH_INTERVAL``
  even while the main thread is blocked; each new subscription is greeted with
  ``iopub_welcome`` (messaging spec 5.5) so a late subscriber loses nothing, paced
  so that a flood of subscriptions cannot flood every client (:mod:`._welcome`).
* **control** (ROUTER): ``kernel_info``, ``interrupt_request`` and
  ``shutdown_request`` are answered here, never queued behind a running cell.
* **captured file descriptors 1 and 2**: output that C extensions and child
  processes write straight to the fds arrives as ``stream`` messages.
* **shell, while the kernel starts**: the thread starts before the main thread
  imports asyncio and the server (half of the start-up time), answers
  ``kernel_info_request`` on shell meanwhile, and queues anything else; the
  server then takes the socket and the queue over (:meth:`IOThread.hand_over`).
  Control and the parent-process watch begin at the hand-over, when their
  handlers exist.

Stream text is the hot path (a ``print`` loop writes twice per line): writers
append to a :class:`StreamSink` without taking the lock, and whoever seals it
(this thread on its timer, a writer whose text is due or passed
``MAX_STREAM_CHUNK``, or ``publish``) drains it under the lock. Taking the
lock per write cost more than the rest of ``print`` together, and a writer
preempted while holding it made this thread's flush wait for the GIL twice.

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
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable

import zmq

from kernel.protocol import (
    DELIMITER,
    JSONDict,
    Message,
    ProtocolError,
    Received,
    Reply,
    Session,
    error_content,
    reply_message,
    status_content,
)
from kernel.server._kernel_info import kernel_info_content
from kernel.transport._curve import ZapHandler
from kernel.transport._limits import MAX_STREAM_MESSAGE_BYTES
from kernel.transport._ratelimit import RateLimitedLog

from ._welcome import WelcomePacer

__all__ = ["FLUSH_INTERVAL", "IOThread", "StreamSink"]

log = logging.getLogger("loom.kernel")

#: Stream text is held at most this long before it is published (seconds).
FLUSH_INTERVAL = 0.02
#: Text that starts a burst (none sent for ``FLUSH_INTERVAL``) goes out after only
#: this long: a front end sees the first line at once, a flood is still batched.
FIRST_FLUSH = 0.002
#: Before the first subscription, hold at most this many iopub messages, this long.
HOLD_MESSAGES = 10_000
HOLD_SECONDS = 30.0
#: A stream message is sealed once it holds this much text (characters), by the
#: writer itself: it bounds message size, and a flood reaches a terminal in pieces
#: it can show while the rest is still being printed. Serialized, such a message is
#: also kept under ``MAX_STREAM_MESSAGE_BYTES`` (64 KiB; see ``_send_stream``).
MAX_STREAM_CHUNK = 1 << 15
#: A writer checks whether its text is due every this many characters.
_CHECK_EVERY = 4096
#: ``drain_fds`` reads at most this many 64 KiB chunks per captured fd.
_MAX_DRAIN_READS = 64


class StreamSink:
    """The text written to one stream (``stdout``/``stderr``) and not yet published.

    Writers call a :meth:`IOThread.writer` function, which appends without a lock; a
    ``deque`` because appending and popping from its two ends are atomic, so a
    seal in another thread never loses a chunk appended meanwhile. ``armed``
    says the I/O thread has a flush timer for this text (due at ``due``); it is
    cleared *before* a seal drains, and a writer checks it *after* appending, so
    text is never left behind without a timer. ``size`` is approximate: a
    writer and a seal may race on it, which only moves a size-triggered seal.
    """

    __slots__ = ("armed", "checkpoint", "chunks", "due", "name", "parent", "size")

    def __init__(self, name: str) -> None:
        self.name = name
        self.chunks: deque[str] = deque()
        self.size = 0
        self.parent: JSONDict = {}
        self.armed = False
        self.due = 0.0
        self.checkpoint = 0  # the size at which the writer next looks at the clock


ControlHandler = Callable[[Message], Reply | None]


class IOThread:
    """Owns iopub and control; see the module docstring for the contract."""

    def __init__(
        self,
        session: Session,
        iopub: zmq.Socket[bytes],
        control: zmq.Socket[bytes],
        *,
        control_session: Session,
        shell: zmq.Socket[bytes] | None = None,
        shell_session: Session | None = None,
        capture_fds: bool = True,
        zap: ZapHandler | None = None,
    ) -> None:
        self.session = session
        # Curve's allow-list: answered here, beside control, because this thread runs
        # while a cell holds the main thread (a client connecting then must not wait).
        self._zap = zap
        self._control_session = control_session
        # Shell until the hand-over: requests queued for the server, in arrival order.
        self._shell = shell
        self.shell_session = shell_session or session
        self._shell_queue: list[Received] = []
        self._handing_over = False
        self._handed_over = threading.Event()
        self._iopub = iopub
        self._control = control
        self.control_handlers: dict[str, ControlHandler] = {}
        #: Parent header for output that has no better parent (fd output, threads).
        self.current_parent: JSONDict = {}
        #: How many messages other than ``status`` went out for ``current_parent``
        #: (see :meth:`begin_request`).
        self.outputs_of_current = 0
        self._lock = threading.Lock()  # guards sealing and every use of _iopub
        # Until the first client subscribes, iopub messages are held rather than
        # dropped by XPUB: a client that sends a request as soon as it has a
        # kernel_info reply (jupyter console does) may not have subscribed yet,
        # and would wait forever for the idle it never saw.
        self._held: list[list[bytes]] | None = []
        self._hold_until = time.monotonic() + HOLD_SECONDS
        self._welcomes = WelcomePacer()
        self._sinks = {name: StreamSink(name) for name in ("stdout", "stderr")}
        self._pipe_writers = {name: self.writer(name) for name in self._sinks}
        self._last_stream_at = 0.0
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stopping = False
        self._rejected = RateLimitedLog(log)
        self._pipes: dict[int, tuple[str, codecs.IncrementalDecoder]] = {}
        #: The capture pipes, polled by :meth:`end_request` (None: fds not captured).
        self._pipe_poll: select.poll | None = None
        self._stdout_sink, self._stderr_sink = self._sinks["stdout"], self._sinks["stderr"]
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

    def hand_over(
        self, on_parent_exit: Callable[[], None], timeout: float = 10.0
    ) -> list[Received]:
        """The server is ready: stop serving shell and return the requests queued on it.

        From now on this thread also serves control (``control_handlers`` must be
        set) and calls ``on_parent_exit`` when the process that started the kernel
        exits. The shell socket belongs to the caller once this returns.
        """
        self.on_parent_exit = on_parent_exit
        self._handing_over = True
        self._wake()
        if not self._handed_over.wait(timeout):
            raise RuntimeError("the I/O thread did not hand the shell socket over")
        queue, self._shell_queue = self._shell_queue, []
        return queue

    def begin_request(self, header: JSONDict) -> None:
        """Output without a better parent belongs to the request ``header`` from now on,
        and :attr:`outputs_of_current` counts what is published for it: a reply that
        declares the count tells its client when it has every output, without ``idle``."""
        with self._lock:
            self.current_parent = header
            self.outputs_of_current = 0

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

    def writer(self, name: str) -> Callable[[str], int]:
        """A function that buffers text for stream ``name`` (``stdout``/``stderr``), for the
        current parent; the text is published within ``FLUSH_INTERVAL``.

        It is called for every write to ``sys.stdout``/``sys.stderr``, so it is a
        closure (no attribute lookups on the hot path) that takes no lock unless
        the parent changed or the text must be sealed now.
        """
        sink = self._sinks[name]
        append = sink.chunks.append

        def write(text: str) -> int:
            if text.__class__ is not str and not isinstance(text, str):
                raise TypeError(f"write() argument must be str, not {type(text).__name__}")
            if not text:
                return 0
            if sink.parent is not self.current_parent:
                self._reparent(sink)
            append(text)
            size = sink.size = sink.size + len(text)
            if not sink.armed:
                self._arm(sink)
            elif size >= sink.checkpoint:
                self._checkpoint(sink)
            return len(text)

        return write

    def _reparent(self, sink: StreamSink) -> None:
        with self._lock:
            self._seal(sink)  # earlier text belongs to the earlier request
            sink.parent = self.current_parent
            self._last_stream_at = 0.0  # a request's first line goes out at once

    def _arm(self, sink: StreamSink) -> None:
        now = time.monotonic()
        quiet = now - self._last_stream_at >= FLUSH_INTERVAL
        sink.due = now + (FIRST_FLUSH if quiet else FLUSH_INTERVAL)
        sink.checkpoint = sink.size + _CHECK_EVERY
        sink.armed = True
        self._wake()  # the thread must arm its flush timer

    def _checkpoint(self, sink: StreamSink) -> None:
        # A writer that keeps writing holds the GIL: the thread's timer would fire a
        # switch interval (5 ms) late, twice (to re-arm, then to flush). So the writer
        # checks the clock itself, every _CHECK_EVERY characters.
        if sink.size >= MAX_STREAM_CHUNK or time.monotonic() >= sink.due:
            with self._lock:
                self._seal(sink)
        else:
            sink.checkpoint = sink.size + _CHECK_EVERY

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

    def _send(self, message: Message, frames: list[bytes] | None = None) -> None:
        """Send (or hold) ``message``; ``frames`` if the caller serialized it already."""
        if message.parent_header is self.current_parent and message.msg_type != "status":
            self.outputs_of_current += 1
        if frames is None:
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

    def _seal(self, sink: StreamSink) -> None:
        """Publish what ``sink`` holds (the order of these steps is what keeps it lock-free
        for writers: see :class:`StreamSink`)."""
        sink.armed = False
        chunks = sink.chunks
        parts = [chunks.popleft() for _ in range(len(chunks))]
        sink.size = 0
        if not parts:
            return
        self._last_stream_at = time.monotonic()
        text = "".join(parts)
        # One write may be larger than a chunk (print of a long string): cut it.
        for start in range(0, len(text), MAX_STREAM_CHUNK):
            self._send_stream(sink, text[start : start + MAX_STREAM_CHUNK])

    def _send_stream(self, sink: StreamSink, text: str) -> None:
        """Publish ``text`` in stream messages of at most ``MAX_STREAM_MESSAGE_BYTES``.

        That bound turns the iopub queue's message count into a byte budget (see
        ``kernel.transport._limits``). Text is cut by characters, and a character may
        take up to six bytes in JSON (``\\u0001``), so the rare chunk that is too large
        once serialized is halved until it fits.
        """
        content = {"name": sink.name, "text": text}
        message = self.session.message("stream", content, parent=sink.parent)
        frames = self.session.serialize(message)
        if len(text) > 1 and sum(map(len, frames)) > MAX_STREAM_MESSAGE_BYTES:
            half = len(text) // 2
            self._send_stream(sink, text[:half])
            self._send_stream(sink, text[half:])
            return
        self._send(message, frames)

    def _seal_all(self) -> None:
        for sink in self._sinks.values():
            self._seal(sink)

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
            if self._pipe_poll is None:
                self._pipe_poll = select.poll()
            self._pipe_poll.register(read_end, select.POLLIN)

    def restore_fds(self) -> None:
        """Point fds 1 and 2 at what they were before capture (after :meth:`stop`)."""
        for fd, name in ((1, "stdout"), (2, "stderr")):
            original = self.original_fds.get(name)
            if original is not None:
                os.dup2(original, fd)

    def end_request(self) -> None:
        """Publish what the request that ends wrote, before its reply: what reached fds 1
        and 2 (:meth:`drain_fds`) and the stream text still buffered.

        The same as :meth:`drain_fds`, but cheap when the request wrote nothing (most
        engine tasks): one ``poll`` of the capture pipes and no iopub lock, where draining
        tried two reads (each an exception) and sealed each stream under the lock.
        """
        if self._pipe_poll is not None:
            # Under the pipe lock: a chunk this thread read has reached its sink by then.
            with self._pipe_lock:
                ready = self._pipe_poll.poll(0)
            if ready:
                self.drain_fds()
                return
        if self._stdout_sink.chunks or self._stderr_sink.chunks:
            self.flush()

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
            text = decoder.decode(data)
            if text:
                self._pipe_writers[name](text)
        return bool(data)

    # -- the thread -------------------------------------------------------------

    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # SIGINT is the main thread's
        poller = zmq.Poller()
        iopub_fd = self._iopub.getsockopt(zmq.FD)
        poller.register(self._wake_fd, zmq.POLLIN)
        poller.register(iopub_fd, zmq.POLLIN)
        if self._zap is not None:
            poller.register(self._zap.socket, zmq.POLLIN)
        for fd in self._pipes:
            poller.register(fd, zmq.POLLIN)
        shell = self._shell
        if shell is not None:
            poller.register(shell, zmq.POLLIN)
        else:
            self._begin_serving(poller)
        while True:
            timeout = self._next_flush_in()
            events = dict(poller.poll(None if timeout is None else max(0, int(timeout * 1000) + 1)))
            if self._wake_fd in events:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake_fd)
            if shell is not None and (shell in events or self._handing_over):
                self._serve_early_shell(shell)
                if self._handing_over:
                    poller.unregister(shell)
                    self._shell = shell = None
                    self._begin_serving(poller)
                    self._handed_over.set()  # a memory barrier: the socket moves threads
            if self._zap is not None and self._zap.socket in events:
                self._zap.answer()
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

    def _begin_serving(self, poller: zmq.Poller) -> None:
        poller.register(self._control, zmq.POLLIN)
        if self._parent_fd is not None:
            poller.register(self._parent_fd, zmq.POLLIN)

    def _next_flush_in(self) -> float | None:
        """Seconds until the next timed event (a stream flush, paced welcomes), or None."""
        now = time.monotonic()
        dues = [sink.due - now for sink in self._sinks.values() if sink.armed]
        welcome_in = self._welcomes.next_in(now)
        if welcome_in is not None:
            dues.append(welcome_in)
        return min(dues) if dues else None

    def _flush_due(self, everything: bool = False) -> None:
        now = time.monotonic()
        for sink in self._sinks.values():
            if everything or (sink.armed and now >= sink.due):
                self._seal(sink)

    def _greet_subscribers(self) -> None:
        # The iopub fd signals edges, not levels: drain everything readable.
        while int(self._iopub.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            frame = self._iopub.recv(zmq.NOBLOCK)
            # A topic holding the delimiter would corrupt the welcome for everyone.
            if frame[:1] == b"\x01" and DELIMITER not in frame:
                self._welcomes.subscribed(frame[1:])
        for topic in self._welcomes.due(time.monotonic()):
            # The greeting answers subscriptions, not a request: no parent. Sent on the
            # topic itself (as ipykernel does), so a subscriber to a topic receives it.
            content = {"subscription": topic.decode("utf-8", "replace")}
            welcome = self.session.message("iopub_welcome", content)
            self._send_frames(self.session.serialize(welcome, [topic] if topic else ()))
            self._release_held()
        if self._welcomes.skipped:
            self._rejected.warning(
                "%d iopub subscriptions to other topics were not greeted (a flood?)",
                self._welcomes.skipped,
            )
            self._welcomes.skipped = 0

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
            handler = self.control_handlers.get(received.message.msg_type)
            if handler is None:
                self._rejected.warning("unsupported control message %r", received.message.msg_type)
                continue
            self._answer(self._control, self._control_session, received, handler)

    def _serve_early_shell(self, shell: zmq.Socket[bytes]) -> None:
        """Answer ``kernel_info`` until anything else arrives; queue the rest for the server."""
        while True:
            try:
                frames = shell.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                received = self.shell_session.deserialize(frames)
            except ProtocolError as exc:
                self._rejected.warning("dropped invalid message on shell: %s", exc)
                continue
            early = received.message.msg_type == "kernel_info_request"
            if early and not self._shell_queue:  # nothing may overtake a queued request
                self._answer(shell, self.shell_session, received, _early_kernel_info)
            else:
                self._shell_queue.append(received)

    def _answer(
        self,
        sock: zmq.Socket[bytes],
        session: Session,
        received: Received,
        handler: ControlHandler,
    ) -> None:
        """Run ``handler`` for a request and reply on ``sock``, between busy and idle."""
        identities, request = received.identities, received.message
        self.publish_new("status", status_content("busy"), request.header)
        try:
            reply = handler(request)
        except Exception as exc:  # a handler bug must not end the control thread
            log.exception("handler for %s failed", request.msg_type)
            reply = Reply(error_content(exc))
        if reply is not None:
            message = reply_message(session, request, reply)
            sock.send_multipart(session.serialize(message, identities))
        self.publish_new("status", status_content("idle"), request.header)


def _early_kernel_info(request: Message) -> Reply:
    return Reply(kernel_info_content())


def _open_parent_pidfd() -> int | None:
    """A pidfd for ``$JPY_PARENT_PID`` (set by kernel managers), or None.

    A pidfd becomes readable when that process exits; this needs no polling. A parent
    already gone gives a descriptor that is readable at once (an eventfd holding 1), so
    the kernel stops as soon as it serves: an engine whose controller died while it was
    starting must not run on forever, with nobody left to stop it.
    """
    value = os.environ.get("JPY_PARENT_PID", "")
    if not value.isdigit() or int(value) <= 1:
        return None
    try:
        return os.pidfd_open(int(value))
    except ProcessLookupError:
        return os.eventfd(1, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    except OSError:  # no pidfd support: nothing to watch
        return None
