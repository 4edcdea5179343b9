"""``LinkState``: the lifecycle of the console's kernel, as a pure state machine.

Theory of operation
-------------------
The console shows one of six states for its kernel (:class:`Status`). Two
things make that state:

the kernel's own status
    ``starting``, ``idle`` or ``busy``, from iopub ``status`` messages. Only
    those whose parent is an ``execute_request`` count (the console's
    completion and ``is_complete`` requests would make the toolbar flicker),
    except around ``starting``: a fresh kernel may run no cell for a while, so
    any status that leaves or enters ``starting`` counts.
an override
    put over the kernel's status while the kernel cannot answer as usual:
    ``starting`` (being launched), ``restarting``, ``dead``,
    ``not responding``. While one is set, the kernel's status is still
    followed but not shown, and requests are not expected to be answered
    promptly (:attr:`LinkState.is_usable` is False).

The driver (:class:`~shell.console._link.KernelLink`) feeds past-tense facts
(:data:`LinkEvent`) to :meth:`LinkState.handle`, which moves the override by
:data:`TRANSITIONS`, follows the kernel's status, and returns the actions
(:data:`LinkAction`) the driver must carry out, in order. Nothing here
awaits, touches a socket, or calls back: the whole behaviour is in the
returned lists, which is what the tests check.

The transitions of the override (``-``: none, the kernel's status shows;
``*``: any override; events not listed for an override leave it as it is)::

    event             from                      to                actions
    LaunchStarted     *                         starting
    KernelAnswered    starting                  -                 WatchProcess (own kernel;
                                                                  from any override)
    LaunchFailed      *                         dead
    HeartbeatLost     -                         not responding    ShowNotice
    HeartbeatBack     not responding            -                 ShowNotice
    HeartbeatBack     dead (attached only)      -                 ShowNotice
    ProcessExited     -, not responding         dead              FailPending, ShowNotice
    RestartBegun      *                         restarting        UnwatchProcess
    RestartFinished   restarting                -                 WatchProcess
    RestartFailed     restarting                dead
    StatusChanged     (no change: the kernel's own status follows it, see above)
    ShutdownBegun     (no change)                                 UnwatchProcess

Further rules:

* :class:`ReportChange` comes first in a list whenever the shown state
  changed, and only then (the toolbar is redrawn once per change).
* A death fails every outstanding request (:class:`FailPending`) before the
  user is told, so no cell waits on a dead kernel; the kernel's own status
  is reset to ``idle`` (a dead kernel's last ``busy`` means nothing).
* An attached kernel's owner may restart it on the same ports, so for a link
  that does not own its kernel, a heartbeat after death brings it back.
* After :class:`ShutdownBegun` nothing the watcher reports matters: the
  exits and silences that follow are the console's own doing. Likewise a
  :class:`ProcessExited` while ``restarting`` or ``starting`` is the old or
  failed process (a failed start is reported as :class:`LaunchFailed`).
* :attr:`LinkState.is_silent` says whether a restart should skip the polite
  ``shutdown_request`` (a dead or silent kernel cannot answer it).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = [
    "ATTACHED_TRANSITIONS",
    "TRANSITIONS",
    "FailPending",
    "HeartbeatBack",
    "HeartbeatLost",
    "KernelAnswered",
    "LaunchFailed",
    "LaunchStarted",
    "LinkAction",
    "LinkEvent",
    "LinkState",
    "ProcessExited",
    "ReportChange",
    "RestartBegun",
    "RestartFailed",
    "RestartFinished",
    "ShowNotice",
    "ShutdownBegun",
    "Status",
    "StatusChanged",
    "UnwatchProcess",
    "WatchProcess",
]


class Status(enum.StrEnum):
    """What the console shows for its kernel (a ``str``: ``Status.BUSY == "busy"``)."""

    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    RESTARTING = "restarting"
    DEAD = "dead"
    NOT_RESPONDING = "not responding"


#: The statuses a kernel reports itself on iopub.
KERNEL_STATUSES = frozenset({Status.STARTING, Status.IDLE, Status.BUSY})


class _Value:
    """Base of the events and actions: immutable, equal by type and fields, and
    shown as ``Name(field=value)``.

    Not dataclasses: this module loads before the console's first prompt, and
    ``@dataclass`` would spend some 15 ms making these sixteen classes (it runs
    ``exec`` for each one's methods); these cost microseconds.
    """

    __slots__ = ()
    #: The fields, in order (for ``match`` patterns, equality and repr).
    __match_args__: tuple[str, ...] = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Value) or type(other) is not type(self):
            return NotImplemented
        return other._fields() == self._fields()

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _set(self, **fields: object) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)


# -- events: past-tense facts ------------------------------------------------------


class LaunchStarted(_Value):
    """The console launched the kernel; it has not answered yet."""

    __slots__ = ()


class KernelAnswered(_Value):
    """The kernel answered ``kernel_info`` (and its iopub delivers): requests work."""

    __slots__ = ()


class LaunchFailed(_Value):
    """The kernel could not be started (the console reports why itself)."""

    __slots__ = ()


class StatusChanged(_Value):
    """An iopub ``status`` message; ``parent_type`` is its parent's ``msg_type``."""

    __slots__ = ("execution_state", "parent_type")
    __match_args__ = ("execution_state", "parent_type")
    execution_state: str
    parent_type: str | None

    def __init__(self, execution_state: str, parent_type: str | None = None) -> None:
        self._set(execution_state=execution_state, parent_type=parent_type)


class HeartbeatLost(_Value):
    """The heartbeat is silent but the kernel still exists; ``reason`` completes
    "it ...": ``"is stopped (SIGSTOP?)"``."""

    __slots__ = ("reason",)
    __match_args__ = ("reason",)
    reason: str

    def __init__(self, reason: str) -> None:
        self._set(reason=reason)


class HeartbeatBack(_Value):
    """The heartbeat answers again."""

    __slots__ = ()


class ProcessExited(_Value):
    """The kernel died: its process exited (``exit_code``), or, for an attached
    kernel (``exit_code`` None), its heartbeat stopped and its ports closed.
    ``reason`` completes "the kernel ...": ``"was killed by SIGKILL"``."""

    __slots__ = ("exit_code", "reason")
    __match_args__ = ("reason", "exit_code")
    reason: str
    exit_code: int | None

    def __init__(self, reason: str, exit_code: int | None = None) -> None:
        self._set(reason=reason, exit_code=exit_code)


class RestartBegun(_Value):
    """The console began replacing the kernel process."""

    __slots__ = ()


class RestartFinished(_Value):
    """The new kernel process answers."""

    __slots__ = ()


class RestartFailed(_Value):
    """The new kernel process could not be started."""

    __slots__ = ()


class ShutdownBegun(_Value):
    """The console is stopping the kernel (or leaving an attached one)."""

    __slots__ = ()


LinkEvent = (
    LaunchStarted
    | KernelAnswered
    | LaunchFailed
    | StatusChanged
    | HeartbeatLost
    | HeartbeatBack
    | ProcessExited
    | RestartBegun
    | RestartFinished
    | RestartFailed
    | ShutdownBegun
)


# -- actions: what the driver must do ------------------------------------------------


class ReportChange(_Value):
    """Tell the console the shown state changed (it redraws the toolbar)."""

    __slots__ = ()


class ShowNotice(_Value):
    """Show ``text`` to the user."""

    __slots__ = ("text",)
    __match_args__ = ("text",)
    text: str

    def __init__(self, text: str) -> None:
        self._set(text=text)


class FailPending(_Value):
    """Fail every outstanding request with ``KernelDied(reason)``."""

    __slots__ = ("reason",)
    __match_args__ = ("reason",)
    reason: str

    def __init__(self, reason: str) -> None:
        self._set(reason=reason)


class WatchProcess(_Value):
    """Watch the kernel process the manager runs now for its exit."""

    __slots__ = ()


class UnwatchProcess(_Value):
    """Stop watching the kernel process: its coming exit is the console's doing."""

    __slots__ = ()


LinkAction = ReportChange | ShowNotice | FailPending | WatchProcess | UnwatchProcess

#: An override, or None: the kernel's own status shows.
Override = Status | None
#: Stands for "any override" in :data:`TRANSITIONS`.
ANY = "*"

#: ``(event type, override before) -> override after``; see the module docstring.
TRANSITIONS: Mapping[tuple[type[LinkEvent], Override | str], Override] = {
    (LaunchStarted, ANY): Status.STARTING,
    (KernelAnswered, Status.STARTING): None,
    (LaunchFailed, ANY): Status.DEAD,
    (HeartbeatLost, None): Status.NOT_RESPONDING,
    (HeartbeatBack, Status.NOT_RESPONDING): None,
    (ProcessExited, None): Status.DEAD,
    (ProcessExited, Status.NOT_RESPONDING): Status.DEAD,
    (RestartBegun, ANY): Status.RESTARTING,
    (RestartFinished, Status.RESTARTING): None,
    (RestartFailed, Status.RESTARTING): Status.DEAD,
}
#: Extra transitions of a link that does not own its kernel.
ATTACHED_TRANSITIONS: Mapping[tuple[type[LinkEvent], Override | str], Override] = {
    (HeartbeatBack, Status.DEAD): None,  # its owner restarted it on the same ports
}
#: Events that mean nothing once the console is shutting down (they are its own doing).
_WATCHER_EVENTS = (HeartbeatLost, HeartbeatBack, ProcessExited)


class LinkState:
    """The lifecycle state of one console's kernel; changes only through :meth:`handle`.

    ``owns_kernel``: the console started the kernel (it can restart it, and
    watches its process). ``death_hint`` is appended to the death notice.
    """

    def __init__(self, *, owns_kernel: bool, death_hint: str = "") -> None:
        self.owns_kernel = owns_kernel
        self.death_hint = death_hint
        self._override: Override = None
        self._kernel = Status.IDLE
        self._closing = False
        self._transitions = dict(TRANSITIONS)
        if not owns_kernel:
            self._transitions.update(ATTACHED_TRANSITIONS)

    @property
    def status(self) -> Status:
        """The state to show: the override if one is set, else the kernel's own status."""
        return self._override or self._kernel

    @property
    def is_dead(self) -> bool:
        return self._override is Status.DEAD

    @property
    def is_usable(self) -> bool:
        """True when requests can be expected to be answered promptly (no override)."""
        return self._override is None

    @property
    def is_silent(self) -> bool:
        """True when the kernel cannot answer a ``shutdown_request`` (dead or not responding)."""
        return self._override in (Status.DEAD, Status.NOT_RESPONDING)

    def handle(self, event: LinkEvent) -> list[LinkAction]:
        """Apply ``event``; return the actions to carry out, in order (module docstring)."""
        if self._closing and isinstance(event, _WATCHER_EVENTS):
            return []
        before = self.status
        actions: list[LinkAction] = []
        match event:
            case StatusChanged():
                self._follow_kernel(event)
            case ShutdownBegun():
                self._closing = True
                actions = [UnwatchProcess()]
            case KernelAnswered():
                self._move(event)
                # From any state: the process to watch is the one that answered.
                actions = [WatchProcess()] if self.owns_kernel else []
            case _:
                if self._move(event):
                    actions = self._effects(event)
        return [ReportChange(), *actions] if self.status != before else actions

    def _move(self, event: LinkEvent) -> bool:
        """Move the override as the transition table says; True if an entry applied."""
        kind = type(event)
        for source in (self._override, ANY):
            if (kind, source) in self._transitions:
                if kind in (KernelAnswered, ProcessExited, RestartFinished):
                    self._kernel = Status.IDLE  # what a dead or new kernel said last is void
                self._override = self._transitions[kind, source]
                return True
        return False

    def _effects(self, event: LinkEvent) -> list[LinkAction]:
        """The actions of an applied transition, beyond :class:`ReportChange`."""
        match event:
            case HeartbeatLost(reason):
                return [ShowNotice(f"The kernel is not responding: it {reason}.")]
            case HeartbeatBack() if self.owns_kernel:
                return [ShowNotice("The kernel is answering again.")]
            case HeartbeatBack():
                return [ShowNotice("The kernel is answering again (restarted by its owner?).")]
            case ProcessExited(reason, exit_code):
                what = (
                    f"Kernel {reason}."
                    if exit_code is not None
                    else f"The kernel {reason}: it died."
                )
                return [FailPending(what), ShowNotice(f"{what} {self.death_hint}".strip())]
            case RestartBegun():
                return [UnwatchProcess()]
            case RestartFinished():
                return [WatchProcess()]
        return []

    def _follow_kernel(self, event: StatusChanged) -> None:
        try:
            state = Status(event.execution_state)
        except ValueError:
            return  # not a status this console knows how to show
        if state not in KERNEL_STATUSES:
            return
        if Status.STARTING in (state, self._kernel) or event.parent_type == "execute_request":
            self._kernel = state
