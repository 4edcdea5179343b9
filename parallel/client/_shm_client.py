"""The client's side of large buffers through shared memory (``parallel/protocol/_shm.py``).

A request's buffers of at least ``LOOM_SHM_MIN`` bytes, for engines whose marker is in
the cluster's ``/dev/shm`` directory, are written once for all of them (one hard link per
engine) and sent as references; the rest of the request, and every engine elsewhere, use
the wire. The client remembers the names it handed out per request and unlinks them when
the request is finished (:meth:`ClientShm.finished`; an engine that mapped its name
removed it already, one that died or aborted the request did not), and all of them when
it closes. Replies whose buffers wait in files are mapped (copy-on-write: the arrays are
writable) and their names unlinked as they are decoded (:meth:`ClientShm.receive`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kernel.protocol import JSONDict

from ..protocol._shm import METADATA_KEY, SharedDir, join_cluster_dir, shm_threshold

__all__ = ["ClientShm", "open_client_shm"]

#: ``[index, name, size]`` per buffer that waits in a file.
Refs = list[list[object]]


class ClientShm:
    """Shared-memory staging for one client; see the module docstring."""

    def __init__(self, shared: SharedDir, session_id: str) -> None:
        self._shared = shared
        self._session_id = session_id
        #: Names handed out per request, unlinked when it finishes.
        self._names: dict[str, list[str]] = {}

    def stage(
        self, buffers: Sequence[bytes], engines: Sequence[str | None]
    ) -> tuple[list[Refs | None], list[bytes]]:
        """References for each target (``engines``: their uuids, in target order; the same
        engine twice gets two names) to ``buffers``' large frames, written once for all
        targets on this host, and the frames as sent to those (the large ones empty).
        Targets without a marker here get ``None``: the wire."""
        refs: list[Refs | None] = [None] * len(engines)
        if not self._shared.any_large(buffers):  # most requests: nothing to look up
            return refs, list(buffers)
        near = [pos for pos, uuid in enumerate(engines) if self._shared.shares_with("e", uuid)]
        large = self._shared.large(buffers, len(near)) if near else []
        wire = list(buffers)
        try:
            for index in large:
                names = self._shared.stage(buffers[index], len(near))
                if names is None:  # a full tmpfs: this one goes over the wire
                    continue
                size = memoryview(buffers[index]).nbytes
                for pos, name in zip(near, names, strict=True):
                    refs[pos] = [*(refs[pos] or []), [index, name, size]]
                wire[index] = b""
        except BaseException:  # Ctrl-C while writing the next buffer: none stays
            for staged in refs:
                self.discard(staged or [])
            raise
        return refs, wire

    def sent(self, msg_id: str, refs: Refs) -> None:
        self._names[msg_id] = [str(ref[1]) for ref in refs]

    def discard(self, refs: Refs) -> None:
        """Unlink the names of a request that was not sent after all."""
        self._shared.unlink([str(ref[1]) for ref in refs])

    def finished(self, msg_id: str) -> None:
        """The request ``msg_id`` is answered or lost: its names go (if still there)."""
        names = self._names.pop(msg_id, None)
        if names:
            self._shared.unlink(names)

    def receive(self, buffers: list[bytes], metadata: JSONDict) -> list[bytes]:
        """A reply's buffers with those waiting in files mapped; raises
        ``SharedMemoryError`` for a reference that cannot be followed."""
        refs = metadata.get(METADATA_KEY)
        return buffers if refs is None else self._shared.resolve(buffers, refs)

    def close(self) -> None:
        for names in self._names.values():
            self._shared.unlink(names)
        self._names.clear()
        self._shared.unmark("c", self._session_id)


def open_client_shm(
    cluster_id: str, authenticates_peers: bool, session_id: str, env: Mapping[str, str]
) -> ClientShm | None:
    """The client's shared memory for its cluster, or ``None`` (the wire): shared memory
    off (``LOOM_SHM=off``), a transport that admits others, or no directory on this host.
    Raises ValueError (one line) for a bad ``LOOM_SHM_MIN``."""
    minimum = shm_threshold(env) if authenticates_peers else None
    shared = join_cluster_dir(cluster_id, "c", session_id, minimum)
    return None if shared is None else ClientShm(shared, session_id)
