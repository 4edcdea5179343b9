"""``KernelServer``: the shell channel loop and its handler table.

Theory of operation
-------------------
The main thread runs one asyncio loop. It reads the shell socket and, for
each request, publishes ``status: busy``, runs the handler registered for the
message type, sends the reply and publishes ``status: idle`` (messaging spec,
"Kernel status"). Handlers are looked up in :attr:`KernelServer.shell_handlers`,
a plain dict: an engine of the parallel layer is this server with more
entries (composition, not subclassing). A handler returns the reply content,
``(content, metadata)``, or ``None`` for messages that have no reply
(``comm_msg`` and friends).

Control, iopub and captured output live on the I/O thread (``_iothread``), the
heartbeat on its own thread (``_heartbeat``), so they keep answering while a
cell blocks the main thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TextIO

import zmq

from kernel.protocol import (
    JSONDict,
    Message,
    Received,
    Reply,
    Session,
    error_content,
    reply_message,
    reply_type,
    status_content,
    unknown_request_reply,
    utc_now_iso,
)
from kernel.protocol._message import NO_EXECUTE_INPUT, UNANNOUNCED
from kernel.server.channels._control import exit_later, sigint_main_thread
from kernel.server.channels._iothread import IOThread
from kernel.server.channels._stdin import StdinBridge
from kernel.server.channels._streams import OutStream
from kernel.transport._ratelimit import RateLimitedLog
from kernel.transport._socket import MessageSocket

from ._abort import AbortWindow, Dispatch
from ._comms import CommManager
from ._kernel_info import kernel_info_content

if TYPE_CHECKING:
    from kernel.server.interpreter._interpreter import Interpreter

__all__ = ["Handler", "KernelServer"]

log = logging.getLogger("loom.kernel")

#: After a failed cell, requests arriving this soon (seconds) are still aborted.
ABORT_GRACE = 0.05
#: On shutdown, how long the request in progress may take to finish (seconds).
STOP_GRACE = 2.0
#: Build the interpreter this long after start even if no request came first.
WARM_UP_DELAY = 0.2
#: A shutdown that interrupted a running cell ends the process this late at most
#: (seconds), even if the cell swallows the interrupt.
SHUTDOWN_DEADLINE = 3.0

HandlerResult = Reply | None
Handler = Callable[[Message, list[bytes]], Awaitable[HandlerResult]]


class KernelServer:
    """Serves one kernel's shell channel; owns the interpreter and helpers."""

    def __init__(
        self,
        session: Session,
        shell: MessageSocket,
        stdin: zmq.Socket[bytes],
        iothread: IOThread,
        *,
        make_interpreter: Callable[[], Interpreter] | None = None,
    ) -> None:
        self.session = session
        self.shell = shell
        self.io = iothread
        self._make_interpreter = make_interpreter or self._default_interpreter
        self._interpreter: Interpreter | None = None
        self.stdin = StdinBridge(stdin, session.fork())
        self.comms = CommManager(
            self._publish_for_current, self._publish_full, lambda: self.current
        )
        self.current: Message | None = None
        #: The loop serving shell; other threads reach it through :meth:`stop_from_thread`.
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._rejected = RateLimitedLog(log)
        #: Opened by a failed execute with ``stop_on_error``; acted on once it has replied.
        self._abort = AbortWindow()
        self._dispatching = False
        self.shell_handlers: dict[str, Handler] = {
            "execute_request": self._execute,
            "kernel_info_request": self._kernel_info,
            "complete_request": self._complete,
            "inspect_request": self._inspect,
            "history_request": self._history,
            "is_complete_request": self._is_complete,
            "comm_info_request": self._comm_info,
            "comm_open": self._comm_open,
            "comm_msg": self._comm_msg,
            "comm_close": self._comm_close,
            "shutdown_request": self._shutdown_on_shell,
        }
        #: Request types answered without ``status: busy``/``idle`` (an engine's
        #: ``apply_request``: its client counts the reply's outputs instead, and two
        #: messages fewer per task is most of a trivial task's cost).
        self.unannounced: set[str] = set()
        #: Shell replies sent so far to each client session: each reply's metadata says
        #: ``loom_seq`` (1, 2, ...), so a client tells a lost reply (a gap) from a late one.
        self.reply_seq: dict[str, int] = {}
        iothread.control_handlers.update(
            kernel_info_request=lambda msg: Reply(kernel_info_content()),
            interrupt_request=self._interrupt_from_control,
            shutdown_request=self._shutdown_from_control,
        )

    @property
    def interpreter(self) -> Interpreter:
        """The Python session, built on first use (on the main thread only)."""
        if self._interpreter is None:
            self._interpreter = self._make_interpreter()
            from ._comm_package import install as serve_comm_package

            serve_comm_package(self.comms)  # once user code imports ``comm``
            self._interpreter.drain_fds = self.io.drain_fds  # C output before Out[N]
            self._interpreter.install_sigint_handler()
        return self._interpreter

    def _default_interpreter(self) -> Interpreter:
        from kernel.server.interpreter._interpreter import Interpreter

        return Interpreter(self._publish_for_current)

    def _warm_up(self) -> None:
        if not self._stopped.is_set() and not self._dispatching:
            self.interpreter  # noqa: B018 - built for its side effect

    # -- publishing ------------------------------------------------------------

    def publish(self, msg_type: str, content: JSONDict, parent: Message | None) -> None:
        self.io.publish_new(msg_type, content, parent.header if parent else {})

    def _publish_for_current(self, msg_type: str, content: JSONDict) -> None:
        self.publish(msg_type, content, self.current)

    def _publish_full(
        self, msg_type: str, content: JSONDict, metadata: JSONDict, buffers: list[bytes]
    ) -> None:
        """Publish with metadata and binary buffers (comms of the ``comm`` package)."""
        parent = self.current.header if self.current else {}
        message = self.session.message(
            msg_type, content, parent=parent, metadata=metadata, buffers=buffers
        )
        self.io.publish(message)

    # -- the loop ----------------------------------------------------------------

    async def serve(self) -> None:
        """Serve shell requests until a shutdown request arrives."""
        # Build the interpreter (magics, display, history...) once the first
        # kernel_info is answered, not before: start-up latency is what clients see.
        asyncio.get_running_loop().call_later(WARM_UP_DELAY, self._warm_up)
        reader = asyncio.ensure_future(self._serve_shell())
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({reader, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if self._dispatching and not reader.done():
                # Let the request in progress send its reply and idle: cancelling it
                # mid-way would lose both (a shutdown interrupts a running cell,
                # which then ends at once).
                await asyncio.wait({reader}, timeout=STOP_GRACE)
        finally:
            for task in (reader, stopped):
                task.cancel()
            if reader.done() and not reader.cancelled() and reader.exception():
                raise reader.exception()  # type: ignore[misc]

    def stop(self) -> None:
        self._stopped.set()

    async def _serve_shell(self) -> None:
        while not self._stopped.is_set():
            received = await self.shell.recv()
            self._dispatching = True
            try:
                await self.dispatch(received.message, received.identities)
            finally:
                self._dispatching = False

    async def dispatch(self, request: Message, identities: list[bytes]) -> None:
        """Answer one request between ``status: busy`` and ``status: idle``.

        The request's output (C code's too) is published before its reply, and the
        reply's metadata counts it (``outputs``, a Loom extension): a client that reads
        the count knows it has every output without waiting for ``idle``. Request types
        in :attr:`unannounced` get no ``busy``/``idle`` at all, nor do requests whose
        metadata has ``loom_unannounced: true`` (``kernel.protocol._message.UNANNOUNCED``).
        """
        self.current = request
        header = request.header
        msg_type = request.msg_type
        self.io.begin_request(header)
        # A client that counts outputs may ask for no busy/idle (UNANNOUNCED): two
        # messages fewer per request, most of a small execute's cost on an engine.
        announced = (
            msg_type not in self.unannounced and request.metadata.get(UNANNOUNCED) is not True
        )
        if announced:
            self.publish("status", status_content("busy"), request)
        reply: Reply | None = None
        try:
            reply = await self._handle(request, identities)
        finally:
            self.io.end_request()  # C output and buffered text, before the reply
            _flush_if_replaced(sys.stdout)
            _flush_if_replaced(sys.stderr)
            try:
                if reply is not None:
                    session = str(header.get("session", ""))
                    seq = self.reply_seq[session] = self.reply_seq.get(session, 0) + 1
                    # A copy: the handler's metadata may be kept (an engine's task record).
                    metadata = reply.metadata.copy()
                    metadata["outputs"] = self.io.outputs_of_current
                    metadata["loom_seq"] = seq
                    # What reply_message() builds, without a second Reply: per request.
                    message = self.session.message(
                        _reply_type(msg_type),
                        reply.content,
                        parent=request,
                        metadata=metadata,
                        buffers=reply.buffers,
                    )
                    await self.shell.send(message, identities)
            finally:
                if announced:
                    self.publish("status", status_content("idle"), request)
        if self._interpreter is None:
            asyncio.get_running_loop().call_soon(self._warm_up)
        if self._abort.is_open:
            await self._abort_queued()

    async def _handle(self, request: Message, identities: list[bytes]) -> Reply | None:
        handler = self.shell_handlers.get(request.msg_type)
        if handler is None:
            self._rejected.warning("unknown shell message type %r", request.msg_type)
            return unknown_request_reply(request)
        try:
            return await handler(request, identities)
        except Exception as exc:
            log.exception("handler for %s failed", request.msg_type)
            return Reply(error_content(exc))

    # -- execute -------------------------------------------------------------------

    async def _execute(self, request: Message, identities: list[bytes]) -> HandlerResult:
        content = request.content
        problem = execute_request_problem(content)
        if problem is not None:
            # Nothing ran and no number was used: the front end's next prompt stays right.
            return Reply(self._invalid_execute(problem), {"status": "error"})
        code = str(content.get("code", ""))
        silent = bool(content.get("silent", False))
        # Messaging spec, execute_request: "silent=True forces store_history to be False".
        store_history = not silent and bool(content.get("store_history", True))
        if not code.strip():
            store_history = False  # like IPython: an empty cell does not use a number
        interp = self.interpreter
        started = utc_now_iso()
        count = interp.execution_count
        interp.arm_interrupt()
        if not silent and request.metadata.get(NO_EXECUTE_INPUT) is not True:
            self.publish("execute_input", {"code": code, "execution_count": count}, request)
        allow_stdin = bool(content.get("allow_stdin", False))
        with self.stdin.installed(allow_stdin, request.header, identities):
            outcome = await interp.run_cell(code, silent=silent, store_history=store_history)
        # Like ipykernel: the number this cell used, or for a cell that used none
        # (silent, empty, store_history=False) the last one used, so that a front
        # end's next prompt is always execution_count + 1.
        reply: JSONDict = {"status": outcome.status, "execution_count": interp.execution_count - 1}
        if outcome.error is not None:
            reply.update(outcome.error)
        reply["user_expressions"] = interp.eval_user_expressions(
            content.get("user_expressions") or {}
        )
        reply["payload"] = outcome.payload
        metadata = {"started": started, "dependencies_met": True, "status": outcome.status}
        if outcome.status == "error" and content.get("stop_on_error", True):
            # Take what is queued *before* this reply goes out: a request sent in
            # reaction to the error (or to an abort) must run, not be aborted too.
            # dispatch() acts on the window once this request is finished.
            self._abort.opened(await self._take_queued())
        return Reply(reply, metadata)

    def _invalid_execute(self, problem: str) -> JSONDict:
        self._rejected.warning("rejected execute_request: %s", problem)
        return {
            "status": "error",
            "ename": "InvalidRequest",
            "evalue": f"execute_request: {problem}",
            "traceback": [],
            "execution_count": self.interpreter.execution_count - 1,
            "user_expressions": {},
            "payload": [],
        }

    async def _take_queued(self) -> list[Received]:
        """Read the shell messages already sent, waiting ``ABORT_GRACE`` for stragglers.

        Cells a client sends back to back ("run all") may reach the socket a
        little after a fast failing cell has finished; the grace catches them.
        """
        queued: list[Received] = []
        try:
            async with asyncio.timeout(ABORT_GRACE):
                while True:
                    queued.append(await self.shell.recv())
        except TimeoutError:
            return queued

    async def _abort_queued(self) -> None:
        """After an error, answer every execute_request queued at the error with ``aborted``."""
        for action in self._abort.closed():
            request, identities = action.received.message, action.received.identities
            if isinstance(action, Dispatch):
                await self.dispatch(request, identities)
                continue
            self.publish("status", status_content("busy"), request)
            aborted = Reply(
                {"status": "aborted", "execution_count": self.interpreter.execution_count},
                {"status": "aborted", "dependencies_met": False},
            )
            await self.shell.send(reply_message(self.session, request, aborted), identities)
            self.publish("status", status_content("idle"), request)

    # -- introspection -------------------------------------------------------------

    async def _kernel_info(self, request: Message, identities: list[bytes]) -> HandlerResult:
        return Reply(kernel_info_content())

    async def _complete(self, request: Message, identities: list[bytes]) -> HandlerResult:
        from kernel.server.introspection._completion import complete

        code = str(request.content.get("code", ""))
        pos = int(request.content.get("cursor_pos", len(code)))
        # An extension may answer first (``%px`` code completes from an engine's namespace):
        # ``interpreter.complete_hook(code, pos)`` awaits a reply content, or None.
        hook = getattr(self.interpreter, "complete_hook", None)
        if hook is not None:
            found = await hook(code, pos)
            if found is not None:
                return Reply({"status": "ok", **found})
        result = complete(
            code, pos, self.interpreter.user_ns, magics=self.interpreter.magic_names()
        )
        return Reply({"status": "ok", **result})

    async def _inspect(self, request: Message, identities: list[bytes]) -> HandlerResult:
        from kernel.server.introspection._inspection import inspect

        code = str(request.content.get("code", ""))
        pos = int(request.content.get("cursor_pos", len(code)))
        level = int(request.content.get("detail_level", 0))
        return Reply({"status": "ok", **inspect(code, pos, level, self.interpreter.user_ns)})

    async def _is_complete(self, request: Message, identities: list[bytes]) -> HandlerResult:
        from kernel.server.introspection._is_complete import is_complete

        return Reply(is_complete(str(request.content.get("code", ""))))

    async def _history(self, request: Message, identities: list[bytes]) -> HandlerResult:
        return Reply({"status": "ok", "history": self.interpreter.history_reply(request.content)})

    # -- comms ---------------------------------------------------------------------

    async def _comm_info(self, request: Message, identities: list[bytes]) -> HandlerResult:
        target = request.content.get("target_name")
        comms = self.comms.info(target if isinstance(target, str) else None)
        return Reply({"status": "ok", "comms": comms})

    async def _comm_open(self, request: Message, identities: list[bytes]) -> HandlerResult:
        self.comms.handle_open(request.content, request)
        return None

    async def _comm_msg(self, request: Message, identities: list[bytes]) -> HandlerResult:
        self.comms.handle_msg(request.content, request)
        return None

    async def _comm_close(self, request: Message, identities: list[bytes]) -> HandlerResult:
        self.comms.handle_close(request.content, request)
        return None

    # -- interrupt and shutdown (called on the I/O thread) ----------------------------

    def _interrupt_from_control(self, request: Message) -> Reply:
        self.interrupt()
        return Reply({"status": "ok"})

    def interrupt(self) -> None:
        """Interrupt the running cell or task (``KeyboardInterrupt``); from any thread."""
        self._sigint_main_thread()

    def _sigint_main_thread(self) -> None:
        interpreter = self._interpreter  # never build it from another thread
        sigint_main_thread(interpreter.sigint_fd if interpreter is not None else None)

    def _shutdown_from_control(self, request: Message) -> Reply:
        restart = bool(request.content.get("restart", False))
        content = {"status": "ok", "restart": restart}
        # The spec (5.4+) also broadcasts the reply on iopub.
        self.io.publish_new("shutdown_reply", content, request.header)
        self.stop_from_thread()
        return Reply(content)

    def stop_from_thread(self) -> None:
        """Stop serving, from a thread other than the main one (control, parent watch)."""
        self._loop.call_soon_threadsafe(self.stop)
        if self._interpreter is not None and self._interpreter.is_busy:
            # A cell holds the main thread: interrupt it so the loop can stop; if
            # the cell swallows the interrupt, leave anyway after a grace period.
            self._sigint_main_thread()
            exit_later(SHUTDOWN_DEADLINE)

    async def _shutdown_on_shell(self, request: Message, identities: list[bytes]) -> HandlerResult:
        # Old clients send shutdown on shell; honour it the same way.
        content = {"status": "ok", "restart": bool(request.content.get("restart", False))}
        self.stop()
        return Reply(content)


@functools.lru_cache(maxsize=64)  # bounded: message types come from peers
def _reply_type(request_type: str) -> str:
    """``reply_type`` once per message type (a handful), not per request."""
    return reply_type(request_type)


def _flush_if_replaced(stream: TextIO | OutStream | None) -> None:
    """Flush ``stream`` (``sys.stdout``/``sys.stderr``) unless it is the kernel's own, which
    :meth:`IOThread.end_request` has just flushed: user code may have put another there."""
    # The exact type first: isinstance goes through io's ABC machinery (~1 us, twice a
    # request).
    if stream is not None and type(stream) is not OutStream and not isinstance(stream, OutStream):
        stream.flush()


def execute_request_problem(content: JSONDict) -> str | None:
    """What makes an ``execute_request``'s content unusable, or None if it can run.

    Checked before anything runs (messaging spec, "Execute"): ``code`` is a string and
    ``user_expressions`` a dict of names to expression strings. The flags are taken for
    their truth value, as ipykernel does, so clients that send 0/1 keep working.
    """
    code = content.get("code", "")
    if not isinstance(code, str):
        return f"'code' must be a string, not {_json_type(code)}"
    expressions = content.get("user_expressions", {})
    if expressions is None:  # some clients send null for "none"
        expressions = {}
    if not isinstance(expressions, dict):
        return f"'user_expressions' must be an object, not {_json_type(expressions)}"
    for name, expression in expressions.items():
        if not isinstance(expression, str):
            return f"user_expressions[{name!r}] must be a string, not {_json_type(expression)}"
    return None


def _json_type(value: object) -> str:
    """``value``'s type in JSON's words (what the sender wrote), not Python's."""
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)
