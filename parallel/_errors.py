"""Exceptions of the ``parallel`` package: one small hierarchy.

Everything ``parallel`` raises on purpose is a :class:`ParallelError`, so a
caller can catch the whole package's failures in one ``except`` and let real
bugs (``TypeError``, ``KeyError``...) through.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence

__all__ = [
    "ClientClosed",
    "ClusterUnavailable",
    "CompositeError",
    "ControllerLost",
    "EngineError",
    "NoEnginesRegistered",
    "ParallelError",
    "RemoteError",
    "SchedulerError",
    "SerializationError",
    "TimeoutError",
]


class ParallelError(Exception):
    """Base class of every error the ``parallel`` package raises on purpose."""


class SchedulerError(ParallelError):
    """A stimulus the scheduler's tables do not allow, or a broken invariant.

    The rejected event changed nothing. ``applied`` holds the instructions of
    the events *before* it in the same ``handle(*events)`` call: those events
    were applied, so the caller must still carry their instructions out.
    """

    def __init__(self, message: str, *, applied: Sequence[object] = ()) -> None:
        super().__init__(message)
        #: Instructions of the earlier events of the same ``handle`` call.
        self.applied: tuple[object, ...] = tuple(applied)


class SerializationError(ParallelError):
    """An object cannot be turned into frames, or frames into an object.

    Raised ``from`` the underlying pickle, import or attribute error, which
    stays available as ``__cause__``.
    """


class ClusterUnavailable(ParallelError):
    """No cluster to connect to: no cluster file, or its controller does not answer."""


class ControllerLost(ClusterUnavailable):
    """The controller stopped answering while a call waited (killed, or its host gone).

    Requests already sent to live engines stay pending; a controller restarted with
    ``loom cluster start --restore`` is found again at the same address.
    """


class ClientClosed(ParallelError, RuntimeError):
    """The client was closed (``Client.close()``): it can neither send nor wait any more.

    Results still pending when it closed fail with it. Tasks it had sent run on, and
    their results reach the controller's records, where a new ``Client`` finds them
    (``get_result``); load-balanced tasks it still held back were never sent.
    """


class NoEnginesRegistered(ParallelError, IndexError):
    """A view targets engines that are not registered (``rc[9]`` with 4 engines)."""


class TimeoutError(ParallelError, builtins.TimeoutError):  # ipyparallel.error.TimeoutError
    """A result did not arrive in time (``AsyncResult.get(timeout=...)``)."""


class RemoteError(ParallelError):
    """A task raised on an engine: the remote exception's name, value and traceback.

    ``engine_id`` is the engine it ran on; ``traceback`` is the engine's formatted
    traceback (what ``str()`` and ``render_traceback()`` show), without the kernel's frames;
    ``kind`` the request's (``apply``, ``execute``), shown as ipyparallel does:
    ``[0:execute]: NameError: ...``.
    """

    def __init__(
        self,
        ename: str,
        evalue: str,
        traceback: Sequence[str] = (),
        engine_id: int | None = None,
        *,
        kind: str = "apply",
    ) -> None:
        super().__init__(ename, evalue)
        self.ename = ename
        self.evalue = evalue
        self.traceback = "\n".join(traceback)
        self.engine_id = engine_id
        self.kind = kind

    def __str__(self) -> str:
        where = f"[{self.engine_id}:{self.kind}]: " if self.engine_id is not None else ""
        return f"{where}{self.ename}: {self.evalue}"

    def render_traceback(self) -> list[str]:
        """The engine's traceback lines, as IPython displays a remote error."""
        return self.traceback.splitlines()


class EngineError(RemoteError):
    """The engine running a task died or stopped answering, so the task has no result."""

    def __init__(self, reason: str, engine_id: int | None = None) -> None:
        super().__init__("EngineError", reason, (), engine_id)


class CompositeError(RemoteError):
    """Several tasks of one request failed (one per engine): ``elist`` holds each error.

    ``str()`` names each engine's exception; like ipyparallel, ``raise_exception(n)``
    re-raises the n-th one.
    """

    def __init__(self, message: str, elist: Sequence[RemoteError]) -> None:
        super().__init__("CompositeError", message, (), None)
        self.elist = list(elist)

    def __str__(self) -> str:
        lines = [f"one or more exceptions raised in {len(self.elist)} tasks:"]
        lines += [f"  {error}" for error in self.elist]
        return "\n".join(lines)

    def raise_exception(self, index: int = 0) -> None:
        raise self.elist[index]
