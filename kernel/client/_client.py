"""``KernelClient``: an asyncio client for the five channels of any Jupyter kernel.

It composes the pure :class:`~kernel.protocol.RequestTracker` with one reader
task per socket. Readers never block on consumers: outputs go to per-request
callbacks or queues, inputs to an async handler run as its own task.

Open one with :func:`connect_client`; every task it starts belongs to the
task set that context manager owns (:mod:`kernel.client._tasks`), and every
socket is closed on exit.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import zmq
import zmq.asyncio

from kernel.protocol import (
    ConnectionInfo,
    ForeignOutput,
    InputRequested,
    JSONDict,
    KernelStatus,
    Message,
    OutputReceived,
    ReplyReceived,
    RequestFinished,
    RequestTracker,
    Session,
    UnexpectedReply,
    new_id,
)
from kernel.transport._socket import MessageSocket, shared_context

from ._errors import KernelDied, KernelError
from ._heartbeat_monitor import HeartbeatMonitor
from ._input_request import current_input_request
from ._tasks import TaskSet, open_task_set

__all__ = ["InputHandler", "KernelClient", "OutputHandler", "connect_client"]

log = logging.getLogger("loom.client")

#: Called with each iopub output of a request (sync or async).
OutputHandler = Callable[[Message], Awaitable[None] | None]
#: Answers an ``input_request``: ``(prompt, password) -> text``; None sends no answer
#: (the handler interrupted the kernel instead: an answer would race the interrupt and
#: could win, letting the cell go on with it).
InputHandler = Callable[[str, bool], Awaitable[str | None]]


@dataclass(slots=True)
class _Call:
    """Driver-side state of one outstanding request."""

    on_output: OutputHandler | None
    on_input: InputHandler | None
    reply: asyncio.Future[Message] = field(default_factory=asyncio.Future)
    finished: asyncio.Future[Message] = field(default_factory=asyncio.Future)

    def fail(self, exc: BaseException) -> None:
        for fut in (self.reply, self.finished):
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: not every caller awaits both


class KernelClient:
    """Talks to one kernel. Create with :func:`connect_client`.

    Attributes meant to be set by the owner:

    ``input_handler``
        default answer to stdin ``input_request`` (per-call ``on_input`` wins).
    ``on_foreign_output``
        ``(message, own_session)`` for iopub traffic answering no pending
        request of ours: other clients' cells, output of threads after a cell ended.
    ``on_status``
        ``(execution_state, message)`` for every ``status`` message.
    ``on_heartbeat``
        ``(responsive)`` when the heartbeat stops or resumes answering.
    """

    def __init__(
        self,
        info: ConnectionInfo,
        *,
        session: Session | None = None,
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        self.info = info
        self.session = session or Session(info.key, info.signature_scheme)
        self._context = context or shared_context()
        self._tracker = RequestTracker(self.session.session_id)
        self._calls: dict[str, _Call] = {}
        self._iopub_seen = asyncio.Event()
        self._tasks: TaskSet | None = None
        self.kernel_info: JSONDict = {}
        self.input_handler: InputHandler | None = None
        self.on_foreign_output: Callable[[Message, bool], None] | None = None
        self.on_status: Callable[[str, Message], None] | None = None
        self.on_heartbeat: Callable[[bool], None] | None = None
        identity = new_id().encode("ascii")  # stdin must share the shell identity
        connect = partial(MessageSocket.connect, context=self._context, curve=info.curve)
        s = self.session
        # A refused handshake is told at once (wait_for_ready), not as a timeout: a
        # refused Curve key, and a plaintext file for a kernel that serves Curve.
        self.shell = connect(
            zmq.DEALER,
            info.url("shell"),
            s,
            "shell",
            identity=identity,
            watch_handshake=True,
        )
        self.stdin = connect(zmq.DEALER, info.url("stdin"), s, "stdin", identity=identity)
        self.control = connect(zmq.DEALER, info.url("control"), s, "control")
        self.iopub = connect(zmq.SUB, info.url("iopub"), s, "iopub")
        self.heartbeat = HeartbeatMonitor(
            info.url("hb"), self._heartbeat_changed, context=self._context, curve=info.curve
        )

    # -- lifecycle ----------------------------------------------------------

    def _start(self, tasks: TaskSet) -> None:
        self._tasks = tasks
        for sock in (self.shell, self.control, self.iopub, self.stdin):
            self._spawn(self._read(sock), name=f"loom-client-{sock.channel}")
        self._spawn(self.heartbeat.run(), name="loom-client-hb")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str | None = None) -> None:
        if self._tasks is None:
            coro.close()  # never run: do not leave it to warn "never awaited"
            raise RuntimeError("the client is not connected (use connect_client)")
        self._tasks.spawn(coro, name=name)

    def _close_sockets(self) -> None:
        for sock in (self.shell, self.control, self.iopub, self.stdin):
            sock.close()

    async def wait_for_ready(self, timeout: float | None = 30.0) -> JSONDict:
        """Wait until the kernel answers ``kernel_info`` *and* iopub delivers.

        A SUB socket misses what is published before its subscription reaches
        the kernel, so a reply alone is not enough: we repeat ``kernel_info``
        until some iopub message (its status, or ``iopub_welcome``) arrives.
        Returns the ``kernel_info_reply`` content; raises ``TimeoutError``, or
        :class:`KernelError` ("authentication failed: ...") if the kernel refused our
        handshake (our Curve key, or plaintext where it serves Curve).
        """
        watch = self.shell.handshake
        if watch is None:
            return await self._wait_for_ready(timeout)
        ready = asyncio.ensure_future(self._wait_for_ready(timeout))
        refused = asyncio.ensure_future(watch.failed())
        try:
            await asyncio.wait((ready, refused), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (ready, refused):
                task.cancel()
            await asyncio.wait((ready, refused))
        told = not refused.cancelled() and refused.exception() is None
        if told and (ready.cancelled() or ready.exception() is not None):
            raise KernelError(f"{refused.result()} (the kernel at {self.info.url('shell')})")
        if ready.cancelled():
            refused.result()  # the watch's own error: never hidden behind a cancellation
        self.shell.end_handshake_watch()
        return ready.result()

    async def _wait_for_ready(self, timeout: float | None) -> JSONDict:
        self._iopub_seen.clear()  # after a restart, the new kernel's iopub must be proven live
        async with asyncio.timeout(timeout):
            while True:
                msg = self.session.message("kernel_info_request")
                call = await self._send_tracked(self.shell, msg, None, None, expects_idle=True)
                try:
                    reply = await call.reply
                    try:
                        async with asyncio.timeout(0.25):
                            await self._iopub_seen.wait()
                    except TimeoutError:
                        continue  # iopub not subscribed yet: ask again
                finally:
                    self._drop(msg.msg_id)
                self.kernel_info = reply.content
                return reply.content

    # -- requests -------------------------------------------------------------

    async def _send_tracked(
        self,
        sock: MessageSocket,
        msg: Message,
        on_output: OutputHandler | None,
        on_input: InputHandler | None,
        *,
        expects_idle: bool,
    ) -> _Call:
        call = _Call(on_output, on_input)
        self._calls[msg.msg_id] = call
        self._tracker.track(msg.msg_id, sock.channel, expects_idle=expects_idle)
        # A DEALER queues for a peer that is not there yet; one with no pipe at all (a
        # refused Curve handshake) makes send() wait on the loop (MessageSocket.send).
        await sock.send(msg)
        return call

    def _drop(self, msg_id: str) -> None:
        self._calls.pop(msg_id, None)
        self._tracker.forget(msg_id)

    async def request(
        self,
        msg_type: str,
        content: JSONDict | None = None,
        *,
        channel: str = "shell",
        on_output: OutputHandler | None = None,
        on_input: InputHandler | None = None,
        wait_for_idle: bool = True,
        timeout: float | None = None,
        metadata: JSONDict | None = None,
        buffers: list[bytes] | None = None,
    ) -> Message:
        """Send a request and return its reply once the request is finished.

        Finished means the reply and ``status: idle`` have both arrived, so all
        output has been handed to ``on_output`` by the time this returns.
        ``metadata`` and binary ``buffers`` travel with the request (an engine's
        ``apply_request`` carries its pickled call in buffers).
        Raises ``TimeoutError`` (the request is then forgotten) or
        :class:`KernelDied` when :meth:`fail_pending` is called.
        """
        sock = self.control if channel == "control" else self.shell
        msg = self.session.message(msg_type, content, metadata=metadata, buffers=buffers)
        try:
            call = await self._send_tracked(
                sock, msg, on_output, on_input, expects_idle=wait_for_idle
            )
            async with asyncio.timeout(timeout):
                return await call.finished
        finally:
            self._drop(msg.msg_id)

    async def execute(
        self,
        code: str,
        *,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: JSONDict | None = None,
        allow_stdin: bool | None = None,
        stop_on_error: bool = True,
        on_output: OutputHandler | None = None,
        on_input: InputHandler | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Run ``code``; outputs go to ``on_output``; returns the ``execute_reply``."""
        if allow_stdin is None:
            allow_stdin = (on_input or self.input_handler) is not None
        content = {
            "code": code,
            "silent": silent,
            "store_history": store_history,
            "user_expressions": user_expressions or {},
            "allow_stdin": allow_stdin,
            "stop_on_error": stop_on_error,
        }
        return await self.request(
            "execute_request", content, on_output=on_output, on_input=on_input, timeout=timeout
        )

    async def execute_iter(self, code: str, **kwargs: Any) -> AsyncIterator[Message]:
        """Yield each iopub output of ``code`` as it arrives, then the ``execute_reply``."""
        queue: asyncio.Queue[Message] = asyncio.Queue()
        task = asyncio.ensure_future(self.execute(code, on_output=queue.put_nowait, **kwargs))
        getter: asyncio.Future[Message] | None = None
        try:
            while not task.done() or not queue.empty():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            yield task.result()
        finally:
            task.cancel()
            if getter is not None:
                getter.cancel()  # a consumer cancelled mid-wait must not leak the get() task

    async def complete(self, code: str, cursor_pos: int | None = None, **kw: Any) -> JSONDict:
        pos = len(code) if cursor_pos is None else cursor_pos
        reply = await self.request("complete_request", {"code": code, "cursor_pos": pos}, **kw)
        return reply.content

    async def inspect(
        self, code: str, cursor_pos: int | None = None, detail_level: int = 0, **kw: Any
    ) -> JSONDict:
        pos = len(code) if cursor_pos is None else cursor_pos
        content = {"code": code, "cursor_pos": pos, "detail_level": detail_level}
        return (await self.request("inspect_request", content, **kw)).content

    async def is_complete(self, code: str, **kw: Any) -> JSONDict:
        return (await self.request("is_complete_request", {"code": code}, **kw)).content

    async def history(
        self,
        hist_access_type: str = "tail",
        *,
        output: bool = False,
        raw: bool = True,
        timeout: float | None = None,
        **params: Any,
    ) -> JSONDict:
        """``params`` are the spec's extra keys: ``n``, ``session``/``start``/``stop``,
        ``pattern``, ``unique``."""
        content = {"hist_access_type": hist_access_type, "output": output, "raw": raw, **params}
        return (await self.request("history_request", content, timeout=timeout)).content

    async def kernel_info_request(self, *, channel: str = "shell", **kw: Any) -> JSONDict:
        return (await self.request("kernel_info_request", channel=channel, **kw)).content

    async def comm_info(self, target_name: str | None = None, **kw: Any) -> JSONDict:
        content = {} if target_name is None else {"target_name": target_name}
        return (await self.request("comm_info_request", content, **kw)).content

    async def interrupt(self, **kw: Any) -> JSONDict:
        """Send ``interrupt_request`` on control (for kernels with ``interrupt_mode: message``)."""
        return (await self.request("interrupt_request", channel="control", **kw)).content

    async def shutdown(self, restart: bool = False, **kw: Any) -> JSONDict:
        """Ask the kernel to shut down; returns once the reply arrives (idle is not awaited)."""
        reply = await self.request(
            "shutdown_request",
            {"restart": restart},
            channel="control",
            wait_for_idle=False,
            **kw,
        )
        return reply.content

    def fail_pending(self, exc: BaseException) -> None:
        """Fail every outstanding request with ``exc`` (e.g. :class:`KernelDied`)."""
        for msg_id, call in list(self._calls.items()):
            call.fail(exc)
            self._drop(msg_id)

    @property
    def pending_requests(self) -> frozenset[str]:
        return self._tracker.pending

    # -- readers --------------------------------------------------------------

    async def _read(self, sock: MessageSocket) -> None:
        while True:
            received = await sock.recv()
            if sock.channel == "iopub":
                self._iopub_seen.set()
            for event in self._tracker.receive(sock.channel, received.message):
                try:
                    self._dispatch(event)
                except Exception:
                    # A buggy callback must not kill the reader (and every later request).
                    log.exception("error handling %s", type(event).__name__)

    def _dispatch(self, event: object) -> None:
        match event:
            case OutputReceived(request_id, message):
                call = self._calls.get(request_id)
                if call is not None and call.on_output is not None:
                    result = call.on_output(message)
                    if inspect.isawaitable(result):
                        self._spawn(_await(result))
            case ReplyReceived(request_id, message):
                call = self._calls.get(request_id)
                if call is not None and not call.reply.done():
                    call.reply.set_result(message)
            case RequestFinished(request_id, reply):
                call = self._calls.get(request_id)
                if call is not None and not call.finished.done():
                    call.finished.set_result(reply)
            case KernelStatus(state, _, message):
                if self.on_status is not None:
                    self.on_status(state, message)
            case ForeignOutput(message, own_session):
                if self.on_foreign_output is not None:
                    self.on_foreign_output(message, own_session)
                else:
                    log.debug("unrouted iopub %s", message.msg_type)
            case InputRequested(request_id, message):
                call = self._calls.get(request_id) if request_id else None
                handler = (call.on_input if call else None) or self.input_handler
                self._spawn(self._answer_input(message, handler))
            case UnexpectedReply(channel, message):
                log.debug("reply to an untracked request on %s: %s", channel, message.msg_type)

    async def _answer_input(self, request: Message, handler: InputHandler | None) -> None:
        prompt = str(request.content.get("prompt", ""))
        password = bool(request.content.get("password", False))
        value: str | None = ""
        if handler is None:
            log.warning("kernel asked for input but no input handler is set; sending ''")
        else:
            try:
                current_input_request.set(request)  # this task's own context
                value = await handler(prompt, password)
            except (EOFError, KeyboardInterrupt):
                value = ""
            except Exception:
                # As for output handlers: a buggy handler must not crash the client's
                # task group (cancelling every request), nor leave the kernel waiting.
                log.exception("input handler failed; sending ''")
        if value is None:
            return  # interrupted: the kernel's input() raises KeyboardInterrupt instead
        reply = self.session.message("input_reply", {"value": value}, parent=request)
        await self.stdin.send(reply)

    def _heartbeat_changed(self, responsive: bool) -> None:
        if self.on_heartbeat is not None:
            self.on_heartbeat(responsive)


async def _await(awaitable: Awaitable[None]) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("output handler failed")


@asynccontextmanager
async def connect_client(
    info: ConnectionInfo,
    *,
    session: Session | None = None,
    ready_timeout: float | None = 30.0,
    wait_ready: bool = True,
) -> AsyncIterator[KernelClient]:
    """Connect to the kernel described by ``info``; close everything on exit.

    With ``wait_ready`` (the default) the client has a ``kernel_info`` reply
    and a live iopub subscription before it is handed out.
    """
    client = KernelClient(info, session=session)
    try:
        async with open_task_set() as tasks:  # on exit, every task of the client ends
            client._start(tasks)
            try:
                if wait_ready:
                    await client.wait_for_ready(ready_timeout)
                yield client
            finally:
                client.fail_pending(KernelDied("the client was closed"))
    finally:
        client._close_sockets()
