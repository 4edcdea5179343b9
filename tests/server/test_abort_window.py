"""The abort-after-error window (kernel.server._abort), in memory, with exact action lists."""

from __future__ import annotations

from kernel.protocol import Message, Received
from kernel.server._abort import Abort, AbortWindow, Dispatch


def _queued(msg_type: str, ident: bytes = b"client") -> Received:
    return Received([ident], Message.create(msg_type, {}, session="s"))


def test_a_closed_window_does_nothing() -> None:
    window = AbortWindow()
    assert not window.is_open
    assert window.closed() == []


def test_queued_executes_are_aborted_and_everything_else_dispatched_in_order() -> None:
    run, info, apply_, run2 = (
        _queued("execute_request"),
        _queued("kernel_info_request"),
        _queued("apply_request"),
        _queued("execute_request"),
    )
    window = AbortWindow()
    window.opened([run, info, apply_, run2])
    assert window.is_open
    assert window.closed() == [Abort(run), Dispatch(info), Dispatch(apply_), Abort(run2)]
    assert not window.is_open
    assert window.closed() == []


def test_a_failure_with_nothing_queued_still_opens_the_window_but_aborts_nothing() -> None:
    window = AbortWindow()
    window.opened([])
    assert window.is_open
    assert window.closed() == []


def test_a_second_failure_before_closing_keeps_both_queues_in_arrival_order() -> None:
    first, second = _queued("execute_request", b"a"), _queued("execute_request", b"b")
    window = AbortWindow()
    window.opened([first])
    window.opened([second])
    assert window.closed() == [Abort(first), Abort(second)]
