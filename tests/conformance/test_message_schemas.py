"""Every message Loom's kernel emits, checked against the messaging spec's JSON schemas.

A real jupyter_client ``BlockingKernelClient`` drives the ``loom`` kernel through a
scenario touching every request type, every iopub output type, stdin, both kinds of
interrupt and shutdown. Everything the kernel sends on iopub, shell, control and
stdin is recorded, then validated with ``jupyter_kernel_test.msgspec_v5``, and every
request is checked to be bracketed by ``status: busy`` / ``status: idle`` on iopub
with that request as parent (messaging spec, "Kernel status").

``msgspec_v5`` (protocol 5.1 era) has no schema for ``iopub_welcome`` or the comm
messages, types ``input_request.password`` as a number where the spec says bool,
and spells the deprecated reply status ``abort`` where kernels send ``aborted``;
``SPEC_FRAGMENTS`` and ``validate`` below fill those gaps from the spec.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from queue import Empty
from typing import Any

import pytest
import zmq
from jsonschema import Draft4Validator, ValidationError
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session
from jupyter_kernel_test import msgspec_v5

pytestmark = pytest.mark.peer

TIMEOUT = 15

Msg = dict[str, Any]

# -- schemas -------------------------------------------------------------------------------

_STRING = {"type": "string"}
_OBJECT = {"type": "object"}

#: Content schemas (messaging spec 5.5) for what msgspec_v5 lacks or gets wrong.
SPEC_FRAGMENTS: dict[str, dict[str, Any]] = {
    "iopub_welcome": {"properties": {"subscription": _STRING}},
    "comm_open": {
        "properties": {
            "comm_id": _STRING,
            "target_name": _STRING,
            "data": _OBJECT,
            "metadata": _OBJECT,
        },
        "required": ["comm_id", "target_name", "data"],
    },
    "comm_msg": {"properties": {"comm_id": _STRING, "data": _OBJECT}},
    "comm_close": {"properties": {"comm_id": _STRING, "data": _OBJECT}},
    "input_request": {"properties": {"prompt": _STRING, "password": {"type": "boolean"}}},
}

_ABORTED_REPLY = Draft4Validator(
    {
        "type": "object",
        "properties": {"status": {"const": "aborted"}},
        "required": ["status"],
    }
)


def validate(msg: Msg, msg_type: str | None = None, parent_id: str | None = None) -> None:
    """``msgspec_v5.validate_message`` with the gaps named in the module docstring filled."""
    msg_type = msg_type or msg["header"]["msg_type"]
    status = msg["content"].get("status") if msg_type.endswith("_reply") else None
    if msg_type not in SPEC_FRAGMENTS and status != "aborted":
        msgspec_v5.validate_message(msg, msg_type, parent_id)
        return
    msgspec_v5.msg_structure_validator.validate(msg)
    if msg["header"]["msg_type"] != msg_type:
        raise ValidationError(f"message type {msg['header']['msg_type']!r} != {msg_type!r}")
    if parent_id is not None and msg["parent_header"].get("msg_id") != parent_id:
        raise ValidationError("parent header does not match the request")
    if status == "aborted":
        _ABORTED_REPLY.validate(msg["content"])
        return
    fragment = SPEC_FRAGMENTS[msg_type]
    schema: dict[str, Any] = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "required": sorted(fragment["properties"]),
        **fragment,
    }
    Draft4Validator(schema).validate(msg["content"])


# -- the recorder -------------------------------------------------------------------------


@dataclass
class Transcript:
    """Everything the kernel sent, in arrival order per channel, and what was asked."""

    #: (channel, message) for every message received from the kernel.
    received: list[tuple[str, Msg]] = field(default_factory=list)
    #: msg_id -> msg_type of every request sent on shell or control.
    requests: dict[str, str] = field(default_factory=dict)
    #: step name -> (request msg_id, reply or None)
    steps: dict[str, tuple[str, Msg | None]] = field(default_factory=dict)
    #: The greeting a fresh raw SUB socket received.
    raw_welcome: Msg | None = None
    kernel_exit_code: int | None = None

    def iopub(self, parent_id: str | None = None) -> list[Msg]:
        return [
            m
            for ch, m in self.received
            if ch == "iopub"
            and (parent_id is None or m["parent_header"].get("msg_id") == parent_id)
        ]

    def outputs(self, step: str) -> list[Msg]:
        """The iopub messages of ``step`` other than status and execute_input."""
        msg_id = self.steps[step][0]
        skip = {"status", "execute_input"}
        return [m for m in self.iopub(msg_id) if m["msg_type"] not in skip]

    def reply(self, step: str) -> Msg:
        reply = self.steps[step][1]
        assert reply is not None
        return reply


class Driver:
    """Sends requests through a real BlockingKernelClient and records what comes back."""

    def __init__(self, kc: BlockingKernelClient, transcript: Transcript) -> None:
        self.kc = kc
        self.t = transcript
        self._idle: set[str] = set()

    def pump_iopub(self, until: Any) -> Msg:
        """Record iopub messages until one satisfies ``until``; return that one."""
        while True:
            msg = self.kc.get_iopub_msg(timeout=TIMEOUT)
            self.t.received.append(("iopub", msg))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                self._idle.add(msg["parent_header"].get("msg_id"))
            if until(msg):
                return msg

    def wait_idle(self, msg_id: str) -> None:
        if msg_id not in self._idle:
            self.pump_iopub(lambda m: msg_id in self._idle)

    def reply(self, channel: str, msg_id: str) -> Msg:
        get = self.kc.get_control_msg if channel == "control" else self.kc.get_shell_msg
        reply = get(timeout=TIMEOUT)
        self.t.received.append((channel, reply))
        assert reply["parent_header"]["msg_id"] == msg_id
        return reply

    def sent(self, step: str, msg_id: str, msg_type: str) -> str:
        self.t.requests[msg_id] = msg_type
        self.t.steps[step] = (msg_id, None)
        return msg_id

    def finish(self, step: str, channel: str = "shell") -> Msg:
        msg_id = self.t.steps[step][0]
        reply = self.reply(channel, msg_id)
        self.wait_idle(msg_id)
        self.t.steps[step] = (msg_id, reply)
        return reply

    def shell(self, step: str, msg_type: str, msg_id: str) -> Msg:
        self.sent(step, msg_id, msg_type)
        return self.finish(step)

    def control(self, step: str, msg_type: str, content: Msg | None = None) -> Msg:
        msg = self.kc.session.msg(msg_type, content or {})
        self.kc.control_channel.send(msg)
        self.sent(step, msg["header"]["msg_id"], msg_type)
        return self.finish(step, "control")

    def send_shell(self, step: str, msg_type: str, content: Msg) -> str:
        msg = self.kc.session.msg(msg_type, content)
        self.kc.shell_channel.send(msg)
        return self.sent(step, msg["header"]["msg_id"], msg_type)

    def stdin_request(self) -> Msg:
        request = self.kc.get_stdin_msg(timeout=TIMEOUT)
        self.t.received.append(("stdin", request))
        return request

    def execute(self, step: str, code: str, **kwargs: Any) -> Msg:
        return self.shell(step, "execute_request", self.kc.execute(code, **kwargs))

    def start_execute(self, step: str, code: str, **kwargs: Any) -> str:
        return self.sent(step, self.kc.execute(code, **kwargs), "execute_request")

    def wait_for_text(self, step: str, text: str) -> None:
        msg_id = self.t.steps[step][0]
        self.pump_iopub(
            lambda m: (
                m["msg_type"] == "stream"
                and m["parent_header"].get("msg_id") == msg_id
                and text in m["content"]["text"]
            )
        )


def receive_welcome(km: KernelManager) -> Msg:
    """Connect a raw zmq SUB socket to iopub and return the first message it receives."""
    info = km.get_connection_info(session=True)
    session = Session(key=km.session.key, signature_scheme=km.session.signature_scheme)
    sub = km.context.socket(zmq.SUB)
    try:
        sub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(f"{info['transport']}://{info['ip']}:{info['iopub_port']}")
        assert sub.poll(TIMEOUT * 1000), "no iopub_welcome for a fresh subscriber"
        _, frames = session.feed_identities(sub.recv_multipart())
        return session.deserialize(frames)
    finally:
        sub.close()


def run_scenario(km: KernelManager, kc: BlockingKernelClient) -> Transcript:
    t = Transcript()
    d = Driver(kc, t)
    # No wait_for_ready(): it would swallow iopub. The welcome (spec 5.5) says that our
    # subscription is live, so nothing published from here on can be missed.
    d.pump_iopub(lambda m: m["msg_type"] == "iopub_welcome")
    d.shell("kernel_info", "kernel_info_request", kc.kernel_info())
    d.control("kernel_info_control", "kernel_info_request")

    d.execute("streams", "import sys; print('out'); print('err', file=sys.stderr)")
    d.execute("display", "display('a'); display({'text/html': '<b>b</b>'}, raw=True)")
    d.execute("update_display", "h = display('a', display_id=True); h.update('b')")
    d.execute("clear_output", "print('x'); clear_output(wait=True)")
    d.execute("execute_result", "6 * 7")
    d.execute("silent", "print('quiet'); 1", silent=True)
    d.execute("user_expressions", "y = 2", user_expressions={"y2": "y * 2", "bad": "1/0"})
    d.execute("error", "1 / 0")
    # The second request is queued while the first waits for input; when the first fails,
    # stop_on_error aborts it.
    d.start_execute("error_then_abort", "input('go? '); 1 / 0")
    d.stdin_request()
    d.start_execute("aborted", "print('never')")
    kc.input("")
    d.finish("error_then_abort")
    d.finish("aborted")

    d.shell("complete", "complete_request", kc.complete("impo"))
    d.shell("inspect", "inspect_request", kc.inspect("len"))
    d.shell("inspect_detail", "inspect_request", kc.inspect("len", detail_level=1))
    d.shell("history_tail", "history_request", kc.history(hist_access_type="tail", n=3))
    d.shell(
        "history_range",
        "history_request",
        kc.history(hist_access_type="range", session=0, start=1, stop=3, output=True),
    )
    d.shell(
        "history_search",
        "history_request",
        kc.history(hist_access_type="search", pattern="print*", unique=True),
    )
    d.shell("is_complete", "is_complete_request", kc.is_complete("for i in x:"))
    d.shell("comm_info", "comm_info_request", kc.comm_info())
    comm_id = uuid.uuid4().hex
    comm_open = {"comm_id": comm_id, "target_name": "no.such.target", "data": {}}
    d.wait_idle(d.send_shell("comm_open", "comm_open", comm_open))

    d.start_execute("input", "x = input('name? ')")
    d.stdin_request()
    kc.input("bob")
    d.finish("input")
    d.execute("input_echo", "print(x)")

    # Interrupt by signal (jupyter_client's KernelManager, interrupt_mode "signal").
    d.start_execute(
        "interrupt_signal", "import time; print('sleeping', flush=True); time.sleep(10)"
    )
    d.wait_for_text("interrupt_signal", "sleeping")
    km.interrupt_kernel()
    d.finish("interrupt_signal")
    # Interrupt by an interrupt_request on control.
    d.start_execute("interrupt_msg", "import time; print('sleeping', flush=True); time.sleep(10)")
    d.wait_for_text("interrupt_msg", "sleeping")
    d.control("interrupt_request", "interrupt_request")
    d.finish("interrupt_msg")
    d.execute("after_interrupts", "print('still here')")

    t.raw_welcome = receive_welcome(km)

    process = km.provisioner.process
    d.sent("shutdown", kc.shutdown(), "shutdown_request")
    d.finish("shutdown", "control")
    t.kernel_exit_code = process.wait(timeout=TIMEOUT)
    # Whatever was published before the kernel exited.
    while True:
        try:
            t.received.append(("iopub", kc.get_iopub_msg(timeout=0.2)))
        except Empty:
            break
    return t


@pytest.fixture(scope="module")
def transcript() -> Iterator[Transcript]:
    km = KernelManager(kernel_name="loom")
    km.start_kernel()
    kc = km.blocking_client()
    kc.start_channels()
    try:
        yield run_scenario(km, kc)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# -- the checks ----------------------------------------------------------------------------


def test_every_message_matches_its_schema(transcript: Transcript) -> None:
    failures = []
    for channel, msg in transcript.received:
        parent_id = msg["parent_header"].get("msg_id")
        try:
            validate(msg, parent_id=parent_id)
        except (ValidationError, AssertionError, KeyError) as exc:
            failures.append(f"{channel} {msg['msg_type']}: {exc}")
    assert not failures, "\n".join(failures)
    types = {(ch, m["msg_type"]) for ch, m in transcript.received}
    expected = {
        ("iopub", name)
        for name in (
            "status",
            "execute_input",
            "stream",
            "display_data",
            "update_display_data",
            "clear_output",
            "execute_result",
            "error",
            "comm_close",
            "iopub_welcome",
            "shutdown_reply",
        )
    }
    expected |= {
        ("shell", name)
        for name in (
            "kernel_info_reply",
            "execute_reply",
            "complete_reply",
            "inspect_reply",
            "history_reply",
            "is_complete_reply",
            "comm_info_reply",
        )
    }
    expected |= {
        ("control", "kernel_info_reply"),
        ("control", "interrupt_reply"),
        ("control", "shutdown_reply"),
        ("stdin", "input_request"),
    }
    assert expected <= types


def test_every_request_is_bracketed_by_busy_and_idle(transcript: Transcript) -> None:
    assert len(transcript.requests) >= 25
    for msg_id, msg_type in transcript.requests.items():
        states = [
            m["content"]["execution_state"]
            for m in transcript.iopub(msg_id)
            if m["msg_type"] == "status"
        ]
        children = transcript.iopub(msg_id)
        assert states == ["busy", "idle"], (msg_type, states)
        assert children[0]["msg_type"] == "status", msg_type
        assert children[-1]["msg_type"] == "status", msg_type


def test_replies_and_outputs(transcript: Transcript) -> None:
    t = transcript
    streams = {m["content"]["name"]: m["content"]["text"] for m in t.outputs("streams")}
    assert streams == {"stdout": "out\n", "stderr": "err\n"}
    display = t.outputs("display")
    assert [m["msg_type"] for m in display] == ["display_data", "display_data"]
    assert display[1]["content"]["data"] == {"text/html": "<b>b</b>"}
    shown, updated = t.outputs("update_display")
    assert (shown["msg_type"], updated["msg_type"]) == ("display_data", "update_display_data")
    assert (
        updated["content"]["transient"]["display_id"] == shown["content"]["transient"]["display_id"]
    )
    assert updated["content"]["data"]["text/plain"] == "'b'"
    assert [m["msg_type"] for m in t.outputs("clear_output")] == ["stream", "clear_output"]
    assert t.outputs("clear_output")[1]["content"]["wait"] is True
    (result,) = t.outputs("execute_result")
    assert result["content"]["data"]["text/plain"] == "42"
    assert (
        result["content"]["execution_count"]
        == t.reply("execute_result")["content"]["execution_count"]
    )
    # silent: no execute_input, no execute_result (stream output is still published).
    assert all(m["msg_type"] == "stream" for m in t.iopub(t.steps["silent"][0])[1:-1])
    expressions = t.reply("user_expressions")["content"]["user_expressions"]
    assert expressions["y2"]["data"]["text/plain"] == "4"
    assert expressions["bad"]["status"] == "error"
    assert t.reply("error")["content"]["ename"] == "ZeroDivisionError"
    assert [m["msg_type"] for m in t.outputs("error")] == ["error"]
    assert t.reply("error_then_abort")["content"]["status"] == "error"
    assert t.reply("aborted")["content"]["status"] == "aborted"
    assert t.outputs("aborted") == []


def test_queued_request_is_aborted_after_the_failed_one_finishes(transcript: Transcript) -> None:
    failed, aborted = (transcript.steps[step][0] for step in ("error_then_abort", "aborted"))
    replies = [m["parent_header"]["msg_id"] for ch, m in transcript.received if ch == "shell"]
    assert replies.index(failed) < replies.index(aborted)
    statuses = [
        (m["parent_header"]["msg_id"], m["content"]["execution_state"])
        for m in transcript.iopub()
        if m["msg_type"] == "status"
    ]
    assert statuses.index((failed, "idle")) < statuses.index((aborted, "busy"))


def test_introspection_replies(transcript: Transcript) -> None:
    t = transcript
    assert t.reply("kernel_info")["content"]["implementation"] == "loom"
    assert t.reply("kernel_info_control")["content"] == t.reply("kernel_info")["content"]
    assert "import" in t.reply("complete")["content"]["matches"]
    assert t.reply("inspect")["content"]["found"] is True
    assert "text/plain" in t.reply("inspect_detail")["content"]["data"]
    tail = t.reply("history_tail")["content"]["history"]
    assert len(tail) == 3
    assert all(isinstance(entry[2], str) for entry in tail)
    ranged = t.reply("history_range")["content"]["history"]
    assert [entry[1] for entry in ranged] == [1, 2]
    assert all(len(entry[2]) == 2 for entry in ranged)  # (input, output) pairs
    found = [entry[2] for entry in t.reply("history_search")["content"]["history"]]
    assert found
    assert all(source.startswith("print") for source in found)
    assert len(found) == len(set(found))
    assert t.reply("is_complete")["content"] == {"status": "incomplete", "indent": "    "}
    assert t.reply("comm_info")["content"]["comms"] == {}


def test_comm_open_to_unknown_target_is_closed(transcript: Transcript) -> None:
    (closed,) = transcript.outputs("comm_open")
    assert closed["msg_type"] == "comm_close"
    msg_id = transcript.steps["comm_open"][0]
    opened = next(m for m in transcript.iopub(msg_id) if m["msg_type"] == "status")
    assert opened["parent_header"]["msg_type"] == "comm_open"


def test_stdin_round_trip(transcript: Transcript) -> None:
    msg_id = transcript.steps["input"][0]
    (request,) = [
        m
        for ch, m in transcript.received
        if ch == "stdin" and m["parent_header"]["msg_id"] == msg_id
    ]
    assert request["content"] == {"prompt": "name? ", "password": False}
    assert transcript.reply("input")["content"]["status"] == "ok"
    assert [m["content"]["text"] for m in transcript.outputs("input_echo")] == ["bob\n"]


def test_interrupts(transcript: Transcript) -> None:
    for step in ("interrupt_signal", "interrupt_msg"):
        content = transcript.reply(step)["content"]
        assert (content["status"], content["ename"]) == ("error", "KeyboardInterrupt"), step
    assert transcript.reply("interrupt_request")["content"]["status"] == "ok"
    assert [m["content"]["text"] for m in transcript.outputs("after_interrupts")] == [
        "still here\n"
    ]


def test_iopub_welcome(transcript: Transcript) -> None:
    welcome = transcript.raw_welcome
    assert welcome is not None
    assert welcome["msg_type"] == "iopub_welcome"
    assert welcome["content"] == {"subscription": ""}
    validate(welcome)
    # jupyter_client's own iopub subscriber was greeted too, before anything else.
    assert transcript.iopub()[0]["msg_type"] == "iopub_welcome"


def test_shutdown(transcript: Transcript) -> None:
    reply = transcript.reply("shutdown")["content"]
    assert reply == {"status": "ok", "restart": False}
    msg_id = transcript.steps["shutdown"][0]
    broadcast = [m for m in transcript.iopub(msg_id) if m["msg_type"] == "shutdown_reply"]
    assert [m["content"] for m in broadcast] == [reply]
    assert transcript.kernel_exit_code == 0
