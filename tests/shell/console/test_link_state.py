"""LinkState: the console's kernel lifecycle, in memory, as exact lists of actions."""

from __future__ import annotations

import pytest

from shell.console._link_state import (
    ATTACHED_TRANSITIONS,
    TRANSITIONS,
    FailPending,
    HeartbeatBack,
    HeartbeatLost,
    KernelAnswered,
    LaunchFailed,
    LaunchStarted,
    LinkEvent,
    LinkState,
    ProcessExited,
    ReportChange,
    RestartBegun,
    RestartFailed,
    RestartFinished,
    ShowNotice,
    ShutdownBegun,
    Status,
    StatusChanged,
    UnwatchProcess,
    WatchProcess,
)

HINT = "Type %restart (or run a cell) to start a new one."
KILLED = ProcessExited("was killed by SIGKILL", -9)
VANISHED = ProcessExited("stopped answering its heartbeat and its ports are closed")
STOPPED = HeartbeatLost("is stopped (SIGSTOP?)")


def own(*events: LinkEvent) -> LinkState:
    """A link to a kernel the console launched, after ``events``."""
    state = LinkState(owns_kernel=True, death_hint=HINT)
    for event in events:
        state.handle(event)
    return state


def attached(*events: LinkEvent) -> LinkState:
    state = LinkState(owns_kernel=False)
    for event in events:
        state.handle(event)
    return state


def shown(state: LinkState) -> Status:
    """``state.status``, read through a call (mypy would narrow the property)."""
    return state.status


def busy(state: LinkState) -> LinkState:
    state.handle(StatusChanged("busy", "execute_request"))
    return state


# -- launching ------------------------------------------------------------------------


def test_a_launched_kernel_starts_then_answers_and_is_watched() -> None:
    state = LinkState(owns_kernel=True)
    assert state.handle(LaunchStarted()) == [ReportChange()]
    assert (state.status, state.is_usable) == (Status.STARTING, False)
    assert state.handle(KernelAnswered()) == [ReportChange(), WatchProcess()]
    assert (state.status, state.is_usable) == (Status.IDLE, True)


def test_a_kernel_that_cannot_start_is_dead_without_a_notice() -> None:
    state = own(LaunchStarted())
    assert state.handle(LaunchFailed()) == [ReportChange()]  # the console says why itself
    assert state.status == Status.DEAD
    assert state.is_dead


def test_an_attached_kernel_is_idle_at_once_and_not_watched_as_a_process() -> None:
    state = attached()
    assert state.handle(KernelAnswered()) == []
    assert state.status == "idle"  # a str: the toolbar and completer compare with text


def test_iopub_status_before_the_kernel_answers_is_followed_but_not_shown() -> None:
    state = own(LaunchStarted())
    assert state.handle(StatusChanged("starting")) == []
    assert state.handle(StatusChanged("idle")) == []  # leaving "starting": any parent counts
    assert state.status == Status.STARTING  # the override shows
    assert state.handle(KernelAnswered()) == [ReportChange(), WatchProcess()]


# -- the kernel's own status -------------------------------------------------------------


def test_only_cells_make_the_kernel_busy() -> None:
    state = own(LaunchStarted(), KernelAnswered())
    assert state.handle(StatusChanged("busy", "complete_request")) == []  # no flicker
    assert state.handle(StatusChanged("busy", "is_complete_request")) == []
    assert state.handle(StatusChanged("busy", "execute_request")) == [ReportChange()]
    assert state.status == Status.BUSY
    assert state.handle(StatusChanged("busy", "execute_request")) == []  # no change
    assert state.handle(StatusChanged("idle", "execute_request")) == [ReportChange()]


def test_unknown_statuses_are_ignored() -> None:
    state = own(LaunchStarted(), KernelAnswered())
    assert state.handle(StatusChanged("dead", "execute_request")) == []
    assert state.handle(StatusChanged("sleepy", "execute_request")) == []
    assert state.status == Status.IDLE


# -- death and silence -----------------------------------------------------------------


def test_an_exit_fails_the_pending_requests_then_says_so_with_the_hint() -> None:
    state = busy(own(LaunchStarted(), KernelAnswered()))
    assert state.handle(KILLED) == [
        ReportChange(),
        FailPending("Kernel was killed by SIGKILL."),
        ShowNotice(f"Kernel was killed by SIGKILL. {HINT}"),
    ]
    assert (state.status, state.is_silent) == (Status.DEAD, True)
    assert state.handle(KILLED) == []  # said once
    assert state.handle(StatusChanged("busy", "execute_request")) == []  # dead shows


def test_an_attached_kernel_whose_ports_closed_died() -> None:
    state = attached(KernelAnswered())
    what = "The kernel stopped answering its heartbeat and its ports are closed: it died."
    assert state.handle(VANISHED) == [ReportChange(), FailPending(what), ShowNotice(what)]


def test_silence_is_not_responding_until_the_heartbeat_is_back() -> None:
    state = busy(own(LaunchStarted(), KernelAnswered()))
    assert state.handle(STOPPED) == [
        ReportChange(),
        ShowNotice("The kernel is not responding: it is stopped (SIGSTOP?)."),
    ]
    assert (state.status, state.is_usable, state.is_silent) == (
        Status.NOT_RESPONDING,
        False,
        True,
    )
    assert state.handle(STOPPED) == []
    assert state.handle(HeartbeatBack()) == [
        ReportChange(),
        ShowNotice("The kernel is answering again."),
    ]
    assert state.status == Status.BUSY  # the kernel's own status shows again


def test_a_kernel_that_is_not_responding_can_still_die() -> None:
    state = own(LaunchStarted(), KernelAnswered(), STOPPED)
    assert state.handle(KILLED) == [
        ReportChange(),
        FailPending("Kernel was killed by SIGKILL."),
        ShowNotice(f"Kernel was killed by SIGKILL. {HINT}"),
    ]


def test_a_heartbeat_after_death_revives_only_an_attached_kernel() -> None:
    mine = own(LaunchStarted(), KernelAnswered(), KILLED)
    assert mine.handle(HeartbeatBack()) == []
    assert mine.is_dead
    theirs = attached(KernelAnswered(), VANISHED)
    assert theirs.handle(HeartbeatBack()) == [
        ReportChange(),
        ShowNotice("The kernel is answering again (restarted by its owner?)."),
    ]
    assert theirs.status == Status.IDLE


def test_silence_and_exits_while_starting_are_for_the_launch_to_report() -> None:
    state = own(LaunchStarted())
    assert state.handle(STOPPED) == []
    assert state.handle(KILLED) == []  # LaunchFailed will come
    assert state.status == Status.STARTING


# -- restart and shutdown -------------------------------------------------------------------


def test_a_restart_unwatches_the_old_process_and_watches_the_new_one() -> None:
    state = busy(own(LaunchStarted(), KernelAnswered()))
    assert state.is_silent is False  # a live kernel is asked to shut down politely
    assert state.handle(RestartBegun()) == [ReportChange(), UnwatchProcess()]
    assert state.handle(KILLED) == []  # the old process: the restart's doing
    assert state.handle(STOPPED) == []
    assert shown(state) == Status.RESTARTING
    assert state.handle(RestartFinished()) == [ReportChange(), WatchProcess()]
    assert shown(state) == Status.IDLE  # not the old kernel's "busy"


def test_a_dead_kernel_is_restarted_without_asking_it() -> None:
    state = own(LaunchStarted(), KernelAnswered(), KILLED)
    assert state.is_silent
    assert state.handle(RestartBegun()) == [ReportChange(), UnwatchProcess()]
    assert state.handle(RestartFailed()) == [ReportChange()]
    assert state.is_dead


def test_after_shutdown_begins_the_watcher_is_not_heard() -> None:
    state = own(LaunchStarted(), KernelAnswered())
    assert state.handle(ShutdownBegun()) == [UnwatchProcess()]
    assert state.handle(STOPPED) == []
    assert state.handle(KILLED) == []
    assert state.handle(HeartbeatBack()) == []
    assert state.status == Status.IDLE


# -- the table ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "after"), sorted(TRANSITIONS.items(), key=str))
def test_every_transition_in_the_table_is_what_handle_does(
    key: tuple[type[LinkEvent], object], after: Status | None
) -> None:
    kind, before = key
    events: dict[type[LinkEvent], LinkEvent] = {
        LaunchStarted: LaunchStarted(),
        KernelAnswered: KernelAnswered(),
        LaunchFailed: LaunchFailed(),
        HeartbeatLost: STOPPED,
        HeartbeatBack: HeartbeatBack(),
        ProcessExited: KILLED,
        RestartBegun: RestartBegun(),
        RestartFinished: RestartFinished(),
        RestartFailed: RestartFailed(),
    }
    reach: dict[object, tuple[LinkEvent, ...]] = {
        None: (LaunchStarted(), KernelAnswered()),
        "*": (LaunchStarted(), KernelAnswered()),
        Status.STARTING: (LaunchStarted(),),
        Status.NOT_RESPONDING: (LaunchStarted(), KernelAnswered(), STOPPED),
        Status.RESTARTING: (LaunchStarted(), KernelAnswered(), RestartBegun()),
    }
    state = own(*reach[before])
    state.handle(events[kind])
    assert state.status == (after or Status.IDLE)


def test_only_an_attached_link_leaves_death_by_heartbeat() -> None:
    assert set(ATTACHED_TRANSITIONS) == {(HeartbeatBack, Status.DEAD)}
    assert (HeartbeatBack, Status.DEAD) not in TRANSITIONS
