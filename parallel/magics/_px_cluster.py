"""Which cluster ``%px`` talks to, and ``%cluster start|stop|list``.

A :class:`ClusterLink` belongs to one session (one kernel, one IPython shell). Its client
is, in order: the one of the cluster ``%cluster start`` started here; else a client of
the newest *running* cluster of the runtime directory (files whose controller is gone
are skipped, so a stale file never costs a timeout), made on first use. With neither,
``%px`` says in one line that no cluster runs and how to start one.

A cluster started here is ``Cluster(detached=False)``: its controller watches this
process and stops, with its engines, when the kernel (or IPython) exits, however it
exits. ``%cluster list`` and stopping a cluster started elsewhere reuse ``loom
cluster``'s own code (``parallel.cluster._cli``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from kernel.protocol import ConnectionFileError, runtime_dir

from .._errors import ParallelError
from ..protocol._controller_info import CLUSTER_FILE_GLOB, ControllerInfo
from ._px_parse import PxUsageError

if TYPE_CHECKING:
    from ..client._pool_client import Client
    from ..cluster._cluster import Cluster

__all__ = ["NO_CLUSTER", "ClusterLink", "newest_running_cluster"]

NO_CLUSTER = (
    "no cluster is running: start one with %cluster start -n 4 "
    "(or `loom cluster start -n 4` in a shell), or call rc.activate() on a Client"
)
_USAGE = "usage: %cluster start [-n N] | %cluster stop | %cluster list"
#: Seconds a first connection to a running cluster may take.
CONNECT_TIMEOUT = 5.0


def newest_running_cluster() -> Path | None:
    """The newest cluster file whose controller process is alive, or None."""
    from ..cluster._cli import _alive

    try:
        files = sorted(runtime_dir().glob(CLUSTER_FILE_GLOB), key=lambda p: p.stat().st_mtime)
    except OSError:
        return None
    for path in reversed(files):
        try:
            info = ControllerInfo.read(path)
        except (ConnectionFileError, OSError):
            continue
        if _alive(info.pid):
            return path
    return None


class ClusterLink:
    """The session's cluster for ``%px`` without ``rc.activate()``; see the module doc."""

    def __init__(self) -> None:
        #: The cluster ``%cluster start`` started (stopped with this process), if any.
        self.cluster: Cluster | None = None
        self._client: Client | None = None

    def client(self) -> Client:
        """The client ``%px`` uses, connecting to the newest running cluster if needed.

        Raises :class:`PxUsageError` (:data:`NO_CLUSTER`) when none runs or answers.
        """
        from ..client._pool_client import Client

        if self._client is not None and not self._client._closed:
            return self._client
        path = newest_running_cluster()
        if path is None:
            raise PxUsageError(NO_CLUSTER)
        try:
            self._client = Client(path, timeout=CONNECT_TIMEOUT)
        except ParallelError as exc:
            raise PxUsageError(
                f"cannot connect to the newest cluster ({path.name}): {exc}"
            ) from None
        return self._client

    async def cluster_magic(self, line: str, *, blocking: bool) -> None:
        """``%cluster start [-n N]``, ``%cluster stop``, ``%cluster list``.

        ``start`` starts a controller and N engines (default: one per CPU) that stop when
        this kernel stops; ``stop`` stops that cluster, or else the one ``%px`` uses;
        ``list`` shows the running clusters. Raises :class:`PxUsageError` for bad usage and,
        as one line, for a cluster that cannot start.
        """
        words = line.split()
        action = words[0] if words else ""
        if action == "start":
            await self.start(_engine_count(words[1:]), blocking=blocking)
        elif action == "stop" and len(words) == 1:
            self.stop()
        elif action == "list" and len(words) == 1:
            from ..cluster._cli import _list

            _list()
        else:
            raise PxUsageError(_USAGE)

    async def start(self, n: int | None, *, blocking: bool) -> None:
        """Start a cluster of ``n`` engines owned by this process; ``%px`` then uses it."""
        from ..cluster._cluster import Cluster

        if self.cluster is not None:
            raise PxUsageError("a cluster started here is running; %cluster stop it first")
        cluster = Cluster(n=n, detached=False)
        try:
            if blocking:
                client = cluster.start_and_connect_sync()
            else:
                client = await cluster.start_and_connect()
        except ParallelError as exc:
            raise PxUsageError(f"the cluster did not start: {exc}") from None
        self._close_client()
        self.cluster, self._client = cluster, client
        print(
            f"Cluster started with {len(client.ids)} engines; it stops with this kernel. "
            "%px runs on them."
        )

    def stop(self) -> None:
        """Stop the cluster started here, or else the one ``%px`` is connected to."""
        from ..cluster._cli import _stop_one

        if self.cluster is not None:
            cluster, self.cluster, self._client = self.cluster, None, None
            cluster.stop_cluster_sync()
            print("cluster stopped")
            return
        path = self._client.cluster_file if self._client is not None else newest_running_cluster()
        self._close_client()
        if path is None:
            print("no cluster is running")
            return
        try:
            _stop_one(path)
        except ConnectionFileError as exc:
            raise PxUsageError(f"%cluster stop: {exc}") from None

    def close(self) -> None:
        """Stop the cluster started here and close the client (unloading the extension)."""
        if self.cluster is not None:
            cluster, self.cluster, self._client = self.cluster, None, None
            cluster.stop_cluster_sync()
        self._close_client()

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _engine_count(words: list[str]) -> int | None:
    """``-n N`` (or ``-nN``, ``--n=N``, ``N``); None for the default."""
    text = " ".join(words)
    if not text:
        return None
    match = re.fullmatch(r"(?:-n\s*=?\s*|--n=|)(\d+)", text)
    if match is None:
        raise PxUsageError(_USAGE)
    return int(match.group(1))
