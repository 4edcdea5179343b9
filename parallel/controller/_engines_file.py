"""Which engines a cluster has had: ``loom-cluster-ID.engines`` next to the cluster file.

A small JSON object, ``{uuid: [id, pid, host]}``, rewritten (atomically, 0600) whenever
an engine registers. Two readers need it after the controller is gone:

- ``--restore``: the restarted hub gives every returning uuid its old id
  (``EngineRegistry(known=...)``), with or without a database;
- ``loom cluster stop`` / ``Cluster.stop`` of a cluster whose controller died: engines
  outlive their controller for a grace period (``parallel.engine._hub_link``), so the
  ones on this machine are stopped by pid (checked to be Loom engines first: a pid may
  have been reused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path

from kernel.protocol import ConnectionFileError, read_json_object, write_private_json

__all__ = ["engines_path", "live_engines", "read_engines", "stop_orphans", "write_engines"]


def engines_path(cluster_file: Path) -> Path:
    return cluster_file.with_suffix(".engines")


def write_engines(cluster_file: Path, engines: dict[str, tuple[int, int]]) -> None:
    """Record ``uuid -> (id, pid)`` for this host."""
    host = socket.gethostname()
    data = {uuid: [engine_id, pid, host] for uuid, (engine_id, pid) in engines.items()}
    write_private_json(engines_path(cluster_file), data)


def read_engines(cluster_file: Path) -> dict[str, tuple[int, int, str]]:
    """``uuid -> (id, pid, host)``; empty if there is no (valid) file."""
    try:
        data = read_json_object(engines_path(cluster_file), "engines file")
    except ConnectionFileError:
        return {}
    out: dict[str, tuple[int, int, str]] = {}
    for uuid, entry in data.items():
        if (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], int)
            and isinstance(entry[1], int)
            and isinstance(entry[2], str)
        ):
            out[uuid] = (entry[0], entry[1], entry[2])
    return out


def live_engines(cluster_file: Path) -> dict[int, str]:
    """``pid -> uuid`` of this host's engines of the cluster that still run (a restored
    controller adopts them: ``LocalEngines.adopt``)."""
    host = socket.gethostname()
    return {
        pid: uuid
        for uuid, (_engine_id, pid, where) in read_engines(cluster_file).items()
        if where == host and _is_engine(pid, cluster_file)
    }


def stop_orphans(cluster_file: Path, sig: int = signal.SIGTERM) -> list[int]:
    """Signal this host's engines of a cluster whose controller is gone; their pids."""
    host = socket.gethostname()
    hit = []
    for _engine_id, pid, where in read_engines(cluster_file).values():
        if where == host and _is_engine(pid, cluster_file):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
                hit.append(pid)
    return hit


def _is_engine(pid: int, cluster_file: Path) -> bool:
    """Whether ``pid`` runs a Loom engine of this cluster (not a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"parallel.engine" in argv and str(cluster_file).encode() in argv
