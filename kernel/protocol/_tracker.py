"""Client-side request tracking, with no I/O.

Theory of operation
-------------------
A client sends a request on shell or control and remembers its ``msg_id`` with
:meth:`RequestTracker.track`. Everything the kernel sends back names that id in
its ``parent_header``:

* exactly one reply on the channel the request went out on;
* on iopub, ``status: busy``, then any outputs, then ``status: idle``.

The reply and the iopub messages travel on different sockets, so they may
arrive in either order. A request is *finished* only when both its reply and
its ``idle`` have arrived (messaging spec, "Kernel status"): only then is all
of its output known to be in. Requests tracked with ``expects_idle=False`` (for
example a ``shutdown_request``, after which the kernel may be gone before it
publishes ``idle``) finish with their reply.

Requests tracked with ``counts_outputs=True`` may also finish without ``idle``:
when their reply declares how many iopub messages the request published
(``metadata["outputs"]``, a Loom extension that Loom's engines send), the request
is finished once the reply and that many outputs are in. An engine publishes no
``busy``/``idle`` for an ``apply_request`` at all: two messages fewer per task.

IOPub is a broadcast: it also carries output for other clients' requests, and
output our own session's requests produce after they finished (a thread in
the kernel still printing). Those are surfaced as :class:`ForeignOutput`,
never dropped. ``stdin`` requests are routed to the request that caused them.

:meth:`RequestTracker.receive` turns one inbound message into a list of events;
the async driver decides what to do with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._message import Message

__all__ = [
    "ForeignOutput",
    "InputRequested",
    "KernelStatus",
    "OutputReceived",
    "ReplyReceived",
    "RequestFinished",
    "RequestTracker",
    "TrackerEvent",
    "UnexpectedReply",
]


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    """The reply to a tracked request arrived (it may still be waiting for idle)."""

    request_id: str
    message: Message


@dataclass(frozen=True, slots=True)
class OutputReceived:
    """An iopub message (other than status) produced by a tracked request."""

    request_id: str
    message: Message


@dataclass(frozen=True, slots=True)
class KernelStatus:
    """The kernel published ``status``; ``request_id`` is None unless it is ours and pending."""

    execution_state: str
    request_id: str | None
    message: Message


@dataclass(frozen=True, slots=True)
class InputRequested:
    """The kernel asked for input on stdin on behalf of a tracked request."""

    request_id: str | None
    message: Message


@dataclass(frozen=True, slots=True)
class RequestFinished:
    """Both the reply and ``status: idle`` of a tracked request have arrived."""

    request_id: str
    reply: Message


@dataclass(frozen=True, slots=True)
class ForeignOutput:
    """IOPub traffic that answers no pending request of ours.

    ``own_session`` is True when the parent was sent by this client's session
    (late output after the request finished), False for other clients' work
    and for messages with no parent at all.
    """

    message: Message
    own_session: bool


@dataclass(frozen=True, slots=True)
class UnexpectedReply:
    """A shell/control reply whose request is not tracked (forgotten or never sent)."""

    channel: str
    message: Message


TrackerEvent = (
    ReplyReceived
    | OutputReceived
    | KernelStatus
    | InputRequested
    | RequestFinished
    | ForeignOutput
    | UnexpectedReply
)


@dataclass(slots=True)
class _Pending:
    channel: str
    expects_idle: bool
    counts_outputs: bool = False
    reply: Message | None = None
    idle: bool = False
    outputs: int = field(default=0)
    #: How many outputs the reply declared (``counts_outputs`` only), once it is in.
    declared: int | None = None

    def complete(self) -> bool:
        if self.reply is None:
            return False
        if self.idle or not self.expects_idle:
            return True
        return self.declared is not None and self.outputs >= self.declared


class RequestTracker:
    """Routes inbound messages to the requests they answer. Pure; never blocks."""

    def __init__(self, session_id: str, *, report_replies: bool = True) -> None:
        """``report_replies=False``: no :class:`ReplyReceived` events, for a client that
        acts only when a request is finished (the pool client's engine links): one event
        object, and one dispatch of it, fewer per reply."""
        self.session_id = session_id
        self._report_replies = report_replies
        self._pending: dict[str, _Pending] = {}

    def track(
        self,
        msg_id: str,
        channel: str = "shell",
        *,
        expects_idle: bool = True,
        counts_outputs: bool = False,
    ) -> None:
        """Start tracking a request sent on ``channel`` ("shell" or "control").

        ``counts_outputs``: a reply that declares its output count finishes the
        request once those outputs are in, without waiting for ``idle``.
        """
        self._pending[msg_id] = _Pending(channel, expects_idle, counts_outputs)

    def forget(self, msg_id: str) -> None:
        """Stop tracking (a caller gave up); later traffic for it becomes foreign."""
        self._pending.pop(msg_id, None)

    def is_pending(self, msg_id: str) -> bool:
        return msg_id in self._pending

    @property
    def pending(self) -> frozenset[str]:
        return frozenset(self._pending)

    def pending_on(self, channel: str) -> list[str]:
        """The requests still pending that went out on ``channel``, in the order sent."""
        return [msg_id for msg_id, pending in self._pending.items() if pending.channel == channel]

    def receive(self, channel: str, message: Message) -> list[TrackerEvent]:
        """The events that ``message``, just read from ``channel``, gives rise to."""
        parent_id = message.parent_id
        pending = self._pending.get(parent_id) if parent_id is not None else None

        if channel == "iopub":
            return self._receive_iopub(message, parent_id, pending)
        if channel == "stdin":
            return [InputRequested(parent_id if pending else None, message)]
        # shell or control: a reply
        if pending is None or parent_id is None or pending.channel != channel:
            return [UnexpectedReply(channel, message)]
        pending.reply = message
        if pending.counts_outputs:
            declared = message.metadata.get("outputs")
            if isinstance(declared, int) and not isinstance(declared, bool):
                pending.declared = declared
        events: list[TrackerEvent] = (
            [ReplyReceived(parent_id, message)] if self._report_replies else []
        )
        if pending.complete():
            events.append(self._finish(parent_id, message))
        return events

    def _receive_iopub(
        self, message: Message, parent_id: str | None, pending: _Pending | None
    ) -> list[TrackerEvent]:
        if message.msg_type == "status":
            state = str(message.content.get("execution_state", ""))
            request_id = parent_id if pending is not None else None
            events: list[TrackerEvent] = [KernelStatus(state, request_id, message)]
            if pending is not None and parent_id is not None and state == "idle":
                pending.idle = True
                if pending.reply is not None:
                    events.append(self._finish(parent_id, pending.reply))
            return events
        if pending is not None and parent_id is not None:
            pending.outputs += 1
            output: list[TrackerEvent] = [OutputReceived(parent_id, message)]
            if pending.reply is not None and pending.complete():
                output.append(self._finish(parent_id, pending.reply))
            return output
        own = message.parent_header.get("session") == self.session_id
        return [ForeignOutput(message, own_session=own)]

    def _finish(self, request_id: str, reply: Message) -> RequestFinished:
        del self._pending[request_id]
        return RequestFinished(request_id, reply)
