"""What a controller does for results that survive it (issue 13): records and restore.

Theory of operation
-------------------
- :func:`open_records` gives the hub its :class:`~._records.Records` (a SQLite database
  next to the cluster file, ``loom-cluster-ID.db``, or in memory with ``--no-db``) and
  the engines file (``_engines_file``), which a restarted hub reads to give each
  returning engine its id back.
- ``--restore`` (:func:`rebind`): a controller that was killed left its cluster file;
  the new one reads it and binds the same addresses with the same key, so the engines,
  which outlive their controller for a grace period, find it by themselves: their next
  ping is answered "register again", and they do, with their uuid and so their id.
  Tasks the database shows as started but never answered are failed then with
  :data:`~._db.INFLIGHT_REASON`; a surviving engine that finishes one later replaces
  that failure with the result.
- At a clean stop the database and the engines file are removed with the cluster file
  (a restore needs the cluster file). Engines a restored controller did not launch are
  asked to shut down over their control channel (:func:`stop_reattached`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from kernel.protocol import ConnectionFileError, Session, utc_now_iso
from kernel.transport import MessageSocket, shared_context

from ..protocol._controller_info import ControllerInfo, newest_cluster_file
from ..protocol._hub_limits import hub_max_message_size, limit_hub_sockets
from ..protocol._hub_messages import EngineRecord
from ..scheduler import EngineRegistry
from ._db import INFLIGHT_REASON, TaskDB
from ._engines_file import engines_path, read_engines, write_engines
from ._records import Records
from ._security import context_of, serve_sockets_with_curve

if TYPE_CHECKING:
    from ._hub import Hub

__all__ = ["RestoreError", "db_path", "open_records", "rebind", "remove_records"]

DURABILITY = ("async", "sync")


class RestoreError(Exception):
    """``--restore`` cannot work (no cluster file, or its controller still runs)."""


def db_path(cluster_file: Path) -> Path:
    return cluster_file.with_suffix(".db")


def open_records(
    hub: Hub, cluster_file: Path, *, db: bool, durability: str, restore: bool
) -> TaskDB:
    """Give ``hub`` its records and its known engines; the database (close it at stop)."""
    if durability not in DURABILITY:
        raise ValueError(f"durability must be 'async' or 'sync', not {durability!r}")
    store = TaskDB(db_path(cluster_file) if db else None, sync=durability == "sync")
    hub.records = Records(store, durability)
    known = read_engines(cluster_file) if restore else {}
    if known:
        hub.registry = EngineRegistry(known={uuid: entry[0] for uuid, entry in known.items()})
    if restore and db:
        failed = store.fail_pending(INFLIGHT_REASON, utc_now_iso())
        if failed:
            print(f"loom controller: {failed} tasks were running at the crash: failed")
    table = {uuid: (entry[0], entry[1]) for uuid, entry in known.items()}

    def registered(uuid: str, engine_id: int, pid: int) -> None:
        table[uuid] = (engine_id, pid)
        write_engines(cluster_file, table)

    hub.on_register = registered
    return store


def remove_records(cluster_file: Path) -> None:
    """What a cluster keeps next to its cluster file: the database (with its WAL files),
    the engines file and the launcher's directory (``loom-launch-ID``, the engines' logs).
    Removed at a clean stop, and by ``loom cluster stop`` of a controller that died."""
    base = db_path(cluster_file)
    for path in (base, Path(f"{base}-wal"), Path(f"{base}-shm"), engines_path(cluster_file)):
        path.unlink(missing_ok=True)
    cluster_id = cluster_file.stem.removeprefix("loom-cluster-")
    if cluster_id != cluster_file.stem:  # a default name: its launcher's directory is known
        shutil.rmtree(cluster_file.parent / f"loom-launch-{cluster_id}", ignore_errors=True)


def rebind(
    cluster_file: str | os.PathLike[str] | None,
) -> tuple[ControllerInfo, MessageSocket, zmq.Socket[bytes]]:
    """Bind the hub and PUB where the dead controller of ``cluster_file`` had them."""
    try:
        path = Path(cluster_file) if cluster_file else newest_cluster_file()
        old = ControllerInfo.read(path)
    except ConnectionFileError as exc:
        raise RestoreError(f"nothing to restore: {exc}") from None
    try:
        limit = hub_max_message_size()
    except ValueError as exc:
        raise RestoreError(str(exc)) from None
    if limit:  # engines that outlived the crash keep their batches under the old limit
        limit = max(limit, old.max_message_size)
    if old.pid and old.pid != os.getpid() and _alive(old.pid):
        raise RestoreError(
            f"the controller of {path} (pid {old.pid}) is still running; stop it first"
        )
    info = ControllerInfo(
        cluster_id=old.cluster_id,
        key=old.key,
        transport=old.transport,
        ip=old.ip,
        hub_port=old.hub_port,
        notify_port=old.notify_port,
        signature_scheme=old.signature_scheme,
        pid=os.getpid(),
        curve=old.curve,
        max_message_size=limit,
    )
    if info.transport == "ipc":
        Path(info.ip).mkdir(mode=0o700, exist_ok=True)
    ctx = shared_context()
    router: zmq.Socket[bytes] = zmq.Socket(ctx, zmq.ROUTER)
    notify: zmq.Socket[bytes] = zmq.Socket(ctx, zmq.PUB)
    for sock in (router, notify):
        sock.linger = 0
        sock.sndhwm = 0
        sock.ipv6 = info.transport == "tcp" and ":" in info.ip
    limit_hub_sockets(router, notify, limit, info.curve is not None)
    if info.curve is not None:  # the same keys: engines and clients keep theirs
        serve_sockets_with_curve(info.curve, [router, notify], context_of(router))
    try:
        router.bind(info.hub_url)
        notify.bind(info.notify_url)
    except zmq.ZMQError as exc:
        router.close()
        notify.close()
        raise RestoreError(f"cannot bind {info.hub_url} again: {exc}") from None
    return info, MessageSocket(router, Session(info.key), "hub"), notify


async def stop_reattached(hub: Hub, records: Iterable[EngineRecord]) -> None:
    """Ask engines this controller did not launch (they re-attached) to shut down."""
    stops = [hub._stop_engine(record) for record in records]
    if stops:
        with contextlib.suppress(Exception):
            await asyncio.gather(*stops)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
