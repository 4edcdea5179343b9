"""RequestTracker: routing replies, iopub and stdin traffic to the requests they answer."""

from __future__ import annotations

from kernel.protocol import (
    ForeignOutput,
    InputRequested,
    KernelStatus,
    Message,
    OutputReceived,
    ReplyReceived,
    RequestFinished,
    RequestTracker,
    Session,
    UnexpectedReply,
)

CLIENT = Session(session_id="client-session")
OTHER_CLIENT = Session(session_id="other-client")
KERNEL = Session(session_id="kernel-session")


def _tracker() -> RequestTracker:
    return RequestTracker(CLIENT.session_id)


def _request(
    tracker: RequestTracker,
    msg_type: str = "execute_request",
    channel: str = "shell",
    *,
    expects_idle: bool = True,
    counts_outputs: bool = False,
) -> Message:
    request = CLIENT.message(msg_type, {"code": "1"})
    tracker.track(request.msg_id, channel, expects_idle=expects_idle, counts_outputs=counts_outputs)
    return request


def _status(parent: Message | None, state: str) -> Message:
    return KERNEL.message("status", {"execution_state": state}, parent=parent)


def _reply(parent: Message, msg_type: str = "execute_reply") -> Message:
    return KERNEL.message(msg_type, {"status": "ok"}, parent=parent)


def _stream(parent: Message | None, text: str = "out") -> Message:
    return KERNEL.message("stream", {"name": "stdout", "text": text}, parent=parent)


def test_full_cycle_reply_then_idle() -> None:
    tracker = _tracker()
    request = _request(tracker)
    busy, out, reply, idle = (
        _status(request, "busy"),
        _stream(request),
        _reply(request),
        _status(request, "idle"),
    )
    assert tracker.pending == frozenset({request.msg_id})

    assert tracker.receive("iopub", busy) == [KernelStatus("busy", request.msg_id, busy)]
    assert tracker.receive("iopub", out) == [OutputReceived(request.msg_id, out)]
    assert tracker.receive("shell", reply) == [ReplyReceived(request.msg_id, reply)]
    assert tracker.is_pending(request.msg_id)
    assert tracker.receive("iopub", idle) == [
        KernelStatus("idle", request.msg_id, idle),
        RequestFinished(request.msg_id, reply),
    ]
    assert not tracker.is_pending(request.msg_id)
    assert tracker.pending == frozenset()


def test_idle_then_reply_finishes_on_reply() -> None:
    tracker = _tracker()
    request = _request(tracker)
    idle, reply = _status(request, "idle"), _reply(request)
    assert tracker.receive("iopub", idle) == [KernelStatus("idle", request.msg_id, idle)]
    assert tracker.is_pending(request.msg_id)
    assert tracker.receive("shell", reply) == [
        ReplyReceived(request.msg_id, reply),
        RequestFinished(request.msg_id, reply),
    ]
    assert tracker.pending == frozenset()


def test_busy_does_not_finish() -> None:
    tracker = _tracker()
    request = _request(tracker)
    reply, busy = _reply(request), _status(request, "busy")
    assert tracker.receive("shell", reply) == [ReplyReceived(request.msg_id, reply)]
    assert tracker.receive("iopub", busy) == [KernelStatus("busy", request.msg_id, busy)]
    assert tracker.is_pending(request.msg_id)


def test_outputs_are_routed_to_their_request() -> None:
    tracker = _tracker()
    first, second = _request(tracker), _request(tracker)
    messages = [
        _stream(first, "a"),
        KERNEL.message("display_data", {"data": {}, "metadata": {}}, parent=second),
        KERNEL.message("execute_result", {"data": {}}, parent=first),
        KERNEL.message("error", {"ename": "E", "evalue": "", "traceback": []}, parent=second),
    ]
    events = [event for m in messages for event in tracker.receive("iopub", m)]
    assert events == [
        OutputReceived(first.msg_id, messages[0]),
        OutputReceived(second.msg_id, messages[1]),
        OutputReceived(first.msg_id, messages[2]),
        OutputReceived(second.msg_id, messages[3]),
    ]


def test_interleaved_requests_finish_independently() -> None:
    tracker = _tracker()
    first, second = _request(tracker), _request(tracker, "complete_request")
    r2, i1 = _reply(second, "complete_reply"), _status(first, "idle")
    i2, r1 = _status(second, "idle"), _reply(first)
    assert tracker.receive("shell", r2) == [ReplyReceived(second.msg_id, r2)]
    assert tracker.receive("iopub", i1) == [KernelStatus("idle", first.msg_id, i1)]
    assert tracker.receive("iopub", i2) == [
        KernelStatus("idle", second.msg_id, i2),
        RequestFinished(second.msg_id, r2),
    ]
    assert tracker.pending == frozenset({first.msg_id})
    assert tracker.receive("shell", r1) == [
        ReplyReceived(first.msg_id, r1),
        RequestFinished(first.msg_id, r1),
    ]
    assert tracker.pending == frozenset()


def test_output_for_another_session_is_foreign() -> None:
    tracker = _tracker()
    _request(tracker)
    theirs = OTHER_CLIENT.message("execute_request", {"code": "2"})
    out = _stream(theirs)
    assert tracker.receive("iopub", out) == [ForeignOutput(out, own_session=False)]


def test_status_for_another_session_has_no_request_id() -> None:
    tracker = _tracker()
    theirs = OTHER_CLIENT.message("execute_request")
    busy = _status(theirs, "busy")
    assert tracker.receive("iopub", busy) == [KernelStatus("busy", None, busy)]


def test_output_without_parent_is_foreign() -> None:
    tracker = _tracker()
    out = _stream(None)
    assert tracker.receive("iopub", out) == [ForeignOutput(out, own_session=False)]
    starting = _status(None, "starting")
    assert tracker.receive("iopub", starting) == [KernelStatus("starting", None, starting)]


def test_late_output_from_own_session_is_foreign_own() -> None:
    tracker = _tracker()
    request = _request(tracker)
    tracker.receive("shell", _reply(request))
    assert isinstance(tracker.receive("iopub", _status(request, "idle"))[-1], RequestFinished)
    late = _stream(request, "printed by a background thread")
    assert tracker.receive("iopub", late) == [ForeignOutput(late, own_session=True)]


def test_own_session_but_never_tracked_is_foreign_own() -> None:
    tracker = _tracker()
    untracked = CLIENT.message("execute_request")
    out = _stream(untracked)
    assert tracker.receive("iopub", out) == [ForeignOutput(out, own_session=True)]


def test_reply_with_unknown_parent_is_unexpected() -> None:
    tracker = _tracker()
    tracked = _request(tracker)
    stranger = _reply(CLIENT.message("execute_request"))
    assert tracker.receive("shell", stranger) == [UnexpectedReply("shell", stranger)]
    assert tracker.pending == frozenset({tracked.msg_id})


def test_reply_without_parent_is_unexpected() -> None:
    tracker = _tracker()
    _request(tracker)
    orphan = KERNEL.message("execute_reply", {"status": "ok"})
    assert tracker.receive("shell", orphan) == [UnexpectedReply("shell", orphan)]


def test_reply_on_wrong_channel_is_unexpected() -> None:
    tracker = _tracker()
    request = _request(tracker, "interrupt_request", "control")
    reply = _reply(request, "interrupt_reply")
    assert tracker.receive("shell", reply) == [UnexpectedReply("shell", reply)]
    # The request is still waiting for its reply on the right channel.
    assert tracker.is_pending(request.msg_id)
    idle = _status(request, "idle")
    assert tracker.receive("iopub", idle) == [KernelStatus("idle", request.msg_id, idle)]
    assert tracker.receive("control", reply) == [
        ReplyReceived(request.msg_id, reply),
        RequestFinished(request.msg_id, reply),
    ]


def test_shell_request_reply_on_control_is_unexpected() -> None:
    tracker = _tracker()
    request = _request(tracker)
    reply = _reply(request)
    assert tracker.receive("control", reply) == [UnexpectedReply("control", reply)]
    assert tracker.is_pending(request.msg_id)


def test_expects_idle_false_finishes_on_reply() -> None:
    tracker = _tracker()
    request = _request(tracker, "shutdown_request", "control", expects_idle=False)
    reply = _reply(request, "shutdown_reply")
    assert tracker.receive("control", reply) == [
        ReplyReceived(request.msg_id, reply),
        RequestFinished(request.msg_id, reply),
    ]
    assert tracker.pending == frozenset()
    # An idle that still arrives belongs to no pending request any more.
    idle = _status(request, "idle")
    assert tracker.receive("iopub", idle) == [KernelStatus("idle", None, idle)]


def _counted_reply(parent: Message, outputs: object) -> Message:
    return KERNEL.message(
        "apply_reply", {"status": "ok"}, parent=parent, metadata={"outputs": outputs}
    )


def test_counted_reply_after_its_outputs_finishes_without_idle() -> None:
    tracker = _tracker()
    request = _request(tracker, "apply_request", counts_outputs=True)
    out1, out2, reply = _stream(request, "a"), _stream(request, "b"), _counted_reply(request, 2)
    assert tracker.receive("iopub", out1) == [OutputReceived(request.msg_id, out1)]
    assert tracker.receive("iopub", out2) == [OutputReceived(request.msg_id, out2)]
    assert tracker.receive("shell", reply) == [
        ReplyReceived(request.msg_id, reply),
        RequestFinished(request.msg_id, reply),
    ]


def test_counted_reply_before_its_outputs_waits_for_the_last_one() -> None:
    tracker = _tracker()
    request = _request(tracker, "apply_request", counts_outputs=True)
    reply, out1, out2 = _counted_reply(request, 2), _stream(request, "a"), _stream(request, "b")
    assert tracker.receive("shell", reply) == [ReplyReceived(request.msg_id, reply)]
    assert tracker.receive("iopub", out1) == [OutputReceived(request.msg_id, out1)]
    assert tracker.receive("iopub", out2) == [
        OutputReceived(request.msg_id, out2),
        RequestFinished(request.msg_id, reply),
    ]
    # What comes later belongs to nobody: the request is finished.
    late = _stream(request, "late")
    assert tracker.receive("iopub", late) == [ForeignOutput(late, own_session=True)]


def test_counted_reply_with_no_outputs_finishes_at_once() -> None:
    tracker = _tracker()
    request = _request(tracker, "apply_request", counts_outputs=True)
    reply = _counted_reply(request, 0)
    assert tracker.receive("shell", reply) == [
        ReplyReceived(request.msg_id, reply),
        RequestFinished(request.msg_id, reply),
    ]


def test_without_reply_reports_only_finished_requests_are_said() -> None:
    # report_replies=False (the pool client): a reply gives no ReplyReceived; the request
    # still finishes when its reply and its counted outputs are in, whichever comes last.
    tracker = RequestTracker(CLIENT.session_id, report_replies=False)
    request = _request(tracker, "apply_request", counts_outputs=True)
    reply = _counted_reply(request, 0)
    assert tracker.receive("shell", reply) == [RequestFinished(request.msg_id, reply)]
    waiting = _request(tracker, "apply_request", counts_outputs=True)
    reply, out = _counted_reply(waiting, 1), _stream(waiting)
    assert tracker.receive("shell", reply) == []
    assert tracker.is_pending(waiting.msg_id)
    assert tracker.receive("iopub", out) == [
        OutputReceived(waiting.msg_id, out),
        RequestFinished(waiting.msg_id, reply),
    ]
    assert tracker.receive("shell", reply) == [UnexpectedReply("shell", reply)]


def test_a_count_is_ignored_unless_asked_for_and_a_bad_count_means_idle() -> None:
    tracker = _tracker()
    plain = _request(tracker, "apply_request")
    reply = _counted_reply(plain, 0)
    assert tracker.receive("shell", reply) == [ReplyReceived(plain.msg_id, reply)]
    for bad in ("1", True, None):
        counted = _request(tracker, "apply_request", counts_outputs=True)
        bad_reply = _counted_reply(counted, bad)
        assert tracker.receive("shell", bad_reply) == [ReplyReceived(counted.msg_id, bad_reply)]
        idle = _status(counted, "idle")
        assert tracker.receive("iopub", idle) == [
            KernelStatus("idle", counted.msg_id, idle),
            RequestFinished(counted.msg_id, bad_reply),
        ]


def test_duplicate_reply_after_finish_is_unexpected() -> None:
    tracker = _tracker()
    request = _request(tracker)
    reply = _reply(request)
    tracker.receive("iopub", _status(request, "idle"))
    tracker.receive("shell", reply)
    assert tracker.receive("shell", reply) == [UnexpectedReply("shell", reply)]


def test_input_request_is_routed_to_its_request() -> None:
    tracker = _tracker()
    request = _request(tracker)
    ask = KERNEL.message("input_request", {"prompt": "name? ", "password": False}, parent=request)
    assert tracker.receive("stdin", ask) == [InputRequested(request.msg_id, ask)]
    assert tracker.is_pending(request.msg_id)


def test_input_request_for_unknown_request_has_no_request_id() -> None:
    tracker = _tracker()
    ask = KERNEL.message("input_request", {"prompt": ""}, parent=CLIENT.message("x"))
    assert tracker.receive("stdin", ask) == [InputRequested(None, ask)]
    no_parent = KERNEL.message("input_request", {"prompt": ""})
    assert tracker.receive("stdin", no_parent) == [InputRequested(None, no_parent)]


def test_forget_makes_later_traffic_foreign() -> None:
    tracker = _tracker()
    request = _request(tracker)
    kept = _request(tracker)
    tracker.forget(request.msg_id)
    assert tracker.pending == frozenset({kept.msg_id})
    out, busy, reply = _stream(request), _status(request, "idle"), _reply(request)
    ask = KERNEL.message("input_request", {"prompt": ""}, parent=request)
    assert tracker.receive("iopub", out) == [ForeignOutput(out, own_session=True)]
    assert tracker.receive("iopub", busy) == [KernelStatus("idle", None, busy)]
    assert tracker.receive("shell", reply) == [UnexpectedReply("shell", reply)]
    assert tracker.receive("stdin", ask) == [InputRequested(None, ask)]
    assert tracker.pending == frozenset({kept.msg_id})


def test_forget_unknown_id_is_harmless() -> None:
    tracker = _tracker()
    tracker.forget("never-tracked")
    assert tracker.pending == frozenset()


def test_status_without_execution_state() -> None:
    tracker = _tracker()
    request = _request(tracker)
    odd = KERNEL.message("status", {}, parent=request)
    assert tracker.receive("iopub", odd) == [KernelStatus("", request.msg_id, odd)]
    assert tracker.is_pending(request.msg_id)


def test_events_compare_by_value() -> None:
    msg = _stream(None)
    assert OutputReceived("a", msg) == OutputReceived("a", msg)
    assert OutputReceived("a", msg) != OutputReceived("b", msg)
    assert ForeignOutput(msg, own_session=True) != ForeignOutput(msg, own_session=False)
