"""Forgetting task records (ipyparallel's ``purge_*_results``) and the hub's history.

Theory of operation
-------------------
ipyparallel's client caches every result (``rc.results``, ``rc.metadata``) and its hub
keeps every task record; ``purge_local_results`` empties the one, ``purge_hub_results``
the other. Loom's client keeps no result cache: a result lives in its ``AsyncResult``
and goes when that is dropped. So :func:`purge_local` only checks its arguments as
ipyparallel does (a task still running here is a :class:`RuntimeError`) and
:func:`purge_hub` is what forgets: a ``purge_request`` to the controller
(``parallel.controller._purge``), which deletes the records.

What a purge may name: ``jobs`` is ``"all"``, a msg_id, an ``AsyncResult`` (its
``msg_ids``: a load-balanced task's id stands for all its attempts) or a list of those;
``targets`` are engine ids as views take them (``Client.resolve_targets``), whose
finished records go. A task still running is never purged by name: this client refuses
one it is still waiting for before asking, and the controller refuses one its records
show as running. A task this process sent may look running there while its result is
already here (its reply's record is on its way: up to a record window, 100 ms), so for
those the controller is asked again for up to ``RECORD_WAIT`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from kernel.protocol._message import made_here

from ._asyncresult import AsyncResult
from ._controller_link import RECORD_WAIT

if TYPE_CHECKING:
    from ._pool_client import Client, Jobs, Targets

__all__ = ["PurgeScope", "hub_history", "msg_ids_of", "purge_hub", "purge_local"]

#: How often the controller is asked again while a task's last record is on its way.
RETRY = 0.05
#: How many ids an error message names before it counts the rest.
NAMED = 5


@dataclass(frozen=True, slots=True)
class PurgeScope:
    """What a purge names, checked: ``msg_ids`` (or ``"all"``), ``engine_ids``, and of
    the jobs given as ``AsyncResult``: the ids of those not done (``unfinished``) and of
    this client's done ones (``seen_done``)."""

    msg_ids: list[str] | Literal["all"]
    engine_ids: list[int]
    unfinished: frozenset[str]
    seen_done: frozenset[str]

    @property
    def named(self) -> list[str]:
        """The ids named (none for ``"all"``)."""
        return [] if self.msg_ids == "all" else self.msg_ids


def msg_ids_of(jobs: object) -> tuple[list[str] | Literal["all"], list[AsyncResult]]:
    """``jobs`` as msg_ids (or ``"all"``), and the ``AsyncResult`` objects among them.
    :class:`TypeError` naming what is neither a msg_id nor an ``AsyncResult``."""
    if jobs is None:
        return [], []
    if isinstance(jobs, str) and jobs == "all":
        return "all", []
    if isinstance(jobs, str | AsyncResult):
        jobs = [jobs]
    elif isinstance(jobs, bytes | bytearray | Mapping) or not isinstance(jobs, Iterable):
        raise TypeError(
            f"jobs must be 'all', a msg_id, an AsyncResult or a list of them, {_not(jobs)}"
        )
    msg_ids: list[str] = []
    results: list[AsyncResult] = []
    for job in jobs:
        if isinstance(job, AsyncResult):
            msg_ids.extend(job.msg_ids)
            results.append(job)
        elif isinstance(job, str) and job:
            msg_ids.append(job)
        elif isinstance(job, str):
            raise ValueError("'' is not a msg_id")
        else:
            raise TypeError(f"each job must be a msg_id or an AsyncResult, {_not(job)}")
    return msg_ids, results


def _not(value: object) -> str:
    """``not 1.5 (float)``, for an error message; an int also gets why it is refused:
    ipyparallel takes it as an index into ``rc.history``, which Loom's client lacks."""
    text = f"not {value!r:.80} ({type(value).__name__})"
    if isinstance(value, int) and not isinstance(value, bool):
        text += ": the client keeps no history to index, use msg_ids or AsyncResults"
    return text


def scope_of(client: Client, jobs: Jobs, targets: Targets) -> PurgeScope:
    """What ``jobs`` and ``targets`` name; :class:`ValueError` if nothing."""
    msg_ids, results = msg_ids_of(jobs)
    engine_ids = _engine_ids_of(client, targets)
    if not msg_ids and not engine_ids:
        raise ValueError("nothing to purge: give jobs (msg_ids, AsyncResults or 'all') or targets")
    unfinished = {m for r in results if not r.done() for m in r.msg_ids}
    seen_done = {m for r in results if r.done() and r._client is client for m in r.msg_ids}
    return PurgeScope(msg_ids, engine_ids, frozenset(unfinished), frozenset(seen_done))


def _engine_ids_of(client: Client, targets: Targets) -> list[int]:
    """Engine ids of ``targets``: none for ``None`` or an empty list (ipyparallel's
    default), else as views resolve them (:class:`NoEnginesRegistered` for an engine
    that is not registered)."""
    if targets is None or (
        isinstance(targets, Sized) and not isinstance(targets, str) and not len(targets)
    ):
        return []
    return client.resolve_targets(targets)


def _waiting(client: Client) -> set[str]:
    """The ids this client still waits for: requests sent and unanswered, tasks in its
    load balancer (not sent yet, or retried), records watched for ``get_result``."""
    balancer = client._balancer
    waiting = client.outstanding | set(client._controller._watched)
    return waiting | balancer.unsettled if balancer is not None else waiting


def _named_running(scope: PurgeScope, waiting: set[str]) -> list[str]:
    return [m for m in scope.named if m in waiting or m in scope.unfinished]


def _refuse(running: Iterable[str], why: str) -> None:
    """:class:`RuntimeError` naming the tasks ``running`` (each once), if any."""
    names = list(dict.fromkeys(running))
    if names:
        more = f" and {len(names) - NAMED} more" if len(names) > NAMED else ""
        raise RuntimeError(
            f"cannot purge tasks still running: {', '.join(names[:NAMED])}{more} ({why});"
            " nothing was purged: wait for them (rc.wait()) or abort them first"
        )


def purge_local(client: Client, jobs: Jobs, targets: Targets) -> None:
    """Check a ``purge_local_results`` (module docstring): there is no cache to clear.
    As ipyparallel, :class:`RuntimeError` if any task it names is one this client still
    waits for (with ``"all"``: any task at all; with ``targets``: any sent to them)."""
    scope = scope_of(client, jobs, targets)
    waiting = _waiting(client)
    if scope.msg_ids == "all":
        running = sorted(waiting)
    else:
        running = _named_running(scope, waiting)
        for engine_id in scope.engine_ids:
            link = client._links.get(engine_id)
            running += sorted(link.tracker.pending) if link is not None else []
    _refuse(running, "this client waits for them")


def purge_hub(client: Client, jobs: Jobs, targets: Targets) -> int:
    """Ask the controller to forget what ``jobs`` and ``targets`` name; how many records
    it deleted. :class:`RuntimeError` if a task named by id is still running: one this
    client waits for (nothing is asked), or one the controller's records show running
    (once its last record had time to arrive, for a task this process sent). Tasks
    running on ``targets`` or under ``"all"`` keep their records, as in ipyparallel."""
    scope = scope_of(client, jobs, targets)
    _refuse(_named_running(scope, _waiting(client)), "this client waits for them")
    content = {"msg_ids": scope.msg_ids, "engine_ids": scope.engine_ids or None}
    late = {m for m in scope.named if made_here(m)} | scope.seen_done
    deadline = time.monotonic() + RECORD_WAIT
    while True:
        reply = client._controller.call("purge_request", content)
        running = [str(m) for m in reply.content.get("running", [])]
        # Finished here, running there: the reply's record is on its way (module docstring).
        if running and set(running) <= late and time.monotonic() < deadline:
            client._pump.pump_until(lambda: False, RETRY)  # reads while it waits
            continue
        _refuse(running, "the controller's records show them running")
        client._controller.forgotten(scope.named)
        return int(reply.content.get("purged", 0))


def hub_history(client: Client) -> list[str]:
    """Every task the controller has a record of, once each, by submission time."""
    history = client._controller.call("history_request", {}).content.get("history")
    if not isinstance(history, list):
        raise ValueError(f"the controller answered history_request without a history: {history!r}")
    return [str(m) for m in history]
