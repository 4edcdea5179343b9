"""Large buffers through shared memory between the processes of one host (files on tmpfs).

Theory of operation
-------------------
A 100 MB array pushed through ZeroMQ is copied by the kernel into the sender's socket,
out of the receiver's, and into a fresh allocation per engine (page faults included).
Between processes of one host that share ``/dev/shm`` it need not travel at all:

* The controller of a cluster whose transport admits only this user
  (``ControllerInfo.authenticates_peers``: ipc, or Curve) makes one directory per
  cluster, ``/dev/shm/loom-<cluster_id>``, mode 0700 (:func:`create_cluster_dir`), and
  removes it with everything in it when it stops; ``Cluster`` and ``loom cluster stop``
  remove it too after a controller that died (:func:`remove_cluster_dir`). Nothing of a
  crashed client or engine outlives the cluster.
* Every engine and client that finds that directory (owned by this user, 0700, not a
  symlink: :func:`open_cluster_dir`) puts a *marker* in it, an empty file named after
  itself: ``e-<engine uuid>``, ``c-<client session id>``. A peer that sees the marker
  sees the same directory on the same tmpfs, which is what sharing needs; an engine on
  another host (ssh) or in another mount namespace has no directory, or a different one
  without that marker, and everything goes over the wire as before. (A marker is a
  stronger test than the directory's device and inode numbers, which two hosts can share.)
* A sender writes a large buffer (:class:`Thresholds`: 1 MiB for several receivers, 32
  MiB for one, by default) once into a new file there (0600, ``O_EXCL``, an unguessable
  name: 128 random bits) and gives every receiver a hard link of its own to it
  (:meth:`SharedDir.stage`); the buffer's frame is sent empty, and the message's metadata
  (signed with the cluster key) says ``loom_shm: [[frame index, name, size], ...]``. A
  name is a name, never a path: a receiver takes only 32 hex digits and opens it in its
  own directory (:meth:`SharedDir.map`).
* A large buffer for one receiver may be written as *parts*, several files written at
  once by several threads of the sender (:meth:`SharedDir.stage_split`; engines do this
  for a reply, the client never: it starts no thread). One write(2) into one tmpfs file
  holds that file's lock, so one file fills at one thread's speed (100 MB: ~47 ms here),
  two files on two cores in ~30 ms. The reference then names the parts in order,
  ``[index, [name, ...], [size, ...]]``, every part but the last a whole number of
  :data:`SPLIT_ALIGN` bytes, and the receiver maps them side by side into one range of
  its address space (:meth:`SharedDir.map_parts`), so the buffer is one contiguous,
  uncopied memoryview again.
* A receiver maps its file ``MAP_PRIVATE`` (copy on write: its array is writable and its
  own, and all receivers share the physical pages until one writes) and unlinks its name
  at once. So each name has exactly one owner, its receiver, and the data lives exactly
  as long as the receivers' mappings. A client also unlinks the names it handed out once
  each request is finished (answered, aborted, or its engine lost): an engine that never
  got the message leaves nothing behind either. An engine writes a reply's file only for
  a client whose marker is there (a closed client removed its own), and the client
  unlinks it as it maps it. A client that dies leaves the names of its unanswered
  requests and replies it never read; the cluster's stop removes them.

Who may read the files: only this user (0700 directory, 0600 files), which is the
trust boundary of ipc itself. Every failure to write (a full tmpfs: ``ENOSPC``) falls
back to the wire for that buffer; every failure to map is a one-line
:class:`SharedMemoryError`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import mmap
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "DEFAULT_MIN",
    "DEFAULT_MIN_SINGLE",
    "METADATA_KEY",
    "SPLIT_ALIGN",
    "SPLIT_PART_MIN",
    "SharedDir",
    "SharedMemoryError",
    "Thresholds",
    "cluster_dir",
    "create_cluster_dir",
    "join_cluster_dir",
    "open_cluster_dir",
    "remove_cluster_dir",
    "shm_threshold",
    "split_sizes",
]

#: Where the per-cluster directories live (tmpfs on Linux).
ROOT: Final = Path("/dev/shm")
#: Buffers for several receivers (a broadcast ``push``) this large (bytes) or larger go
#: through shared memory by default (``LOOM_SHM_MIN``): one write instead of a copy into
#: and out of a socket per receiver. Measured on 2 cores, 4 engines: even at 256 KiB,
#: 1 MiB ~10% faster, 4 MiB ~2x, 16 MiB ~2.3x.
DEFAULT_MIN: Final = 1 << 20
#: ... and for one receiver (a ``pull``, ``scatter``, a task) (``LOOM_SHM_MIN_SINGLE``).
#: Up to glibc's largest dynamic mmap threshold (32 MiB) a receiving process reuses the
#: memory of the last message it freed, already faulted in, while a tmpfs file gets new
#: pages each time: one receiver of 4 to 16 MiB was up to 2x slower through a file, 64
#: MiB ~1.5x faster, 100 MB ~1.7x.
DEFAULT_MIN_SINGLE: Final = 32 << 20
#: The metadata key of a message whose buffers wait in files: ``[[index, name, size]...]``.
METADATA_KEY: Final = "loom_shm"

#: A buffer is split into parts (:meth:`SharedDir.stage_split`) of at least this many bytes:
#: below it a thread's start and a second file cost more than the lock they avoid.
SPLIT_PART_MIN: Final = 16 << 20
#: Every part but the last is a multiple of this (bytes): each maps at a page boundary
#: of the receiver's range (2 MiB: a page of any size Linux uses for such files).
SPLIT_ALIGN: Final = 2 << 20
#: The most parts one buffer is split into (a receiver validates this bound).
_MAX_PARTS = 64

_DATA_NAME = re.compile(r"[0-9a-f]{32}")
_PEER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Linux writes at most this much per write(2) call.
_WRITE_CHUNK = 1 << 30


class SharedMemoryError(Exception):
    """A shared-memory reference that cannot be followed (missing, foreign, malformed)."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The smallest buffer (bytes) a process sends through shared memory."""

    #: When it goes to several receivers at once.
    many: int = DEFAULT_MIN
    #: When it goes to one.
    one: int = DEFAULT_MIN_SINGLE

    def minimum(self, receivers: int) -> int:
        return self.one if receivers == 1 else self.many


def shm_threshold(env: Mapping[str, str]) -> Thresholds | None:
    """The thresholds from ``LOOM_SHM_MIN`` and ``LOOM_SHM_MIN_SINGLE`` (bytes); ``None``
    (the wire for everything) if ``LOOM_SHM`` is ``off``/``0``/``no``/``false``.

    Raises ValueError with a one-line message for a value that is no number.
    """
    if env.get("LOOM_SHM", "").strip().lower() in ("off", "0", "no", "false"):
        return None
    values = []
    for name, default in (
        ("LOOM_SHM_MIN", DEFAULT_MIN),
        ("LOOM_SHM_MIN_SINGLE", DEFAULT_MIN_SINGLE),
    ):
        text = env.get(name, "").strip()
        if text and (not text.isdigit() or int(text) < 1):
            raise ValueError(f"{name} must be a positive number of bytes, not {text!r}")
        values.append(int(text) if text else default)
    return Thresholds(*values)


def cluster_dir(cluster_id: str) -> Path:
    """Where the shared buffers of cluster ``cluster_id`` live."""
    if not _PEER_ID.fullmatch(cluster_id):
        raise ValueError(f"not a cluster id: {cluster_id!r}")
    return ROOT / f"loom-{cluster_id}"


def create_cluster_dir(cluster_id: str) -> Path | None:
    """Make (or, for a restored controller, keep) the cluster's directory; ``None`` if
    there is no ``/dev/shm`` or the name is taken by something that is not ours."""
    path = cluster_dir(cluster_id)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:  # no /dev/shm (not Linux), read-only, ...: the wire it is
        return None
    return open_cluster_dir(cluster_id)


def open_cluster_dir(cluster_id: str) -> Path | None:
    """The cluster's directory if it exists and only this user can use it, else ``None``."""
    path = cluster_dir(cluster_id)
    try:
        st = os.lstat(path)
    except OSError:
        return None
    private = stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077
    return path if private else None


def remove_cluster_dir(cluster_id: str) -> None:
    """Remove the cluster's directory and every file left in it (if it is ours)."""
    with contextlib.suppress(ValueError):
        if open_cluster_dir(cluster_id) is not None:
            shutil.rmtree(cluster_dir(cluster_id), ignore_errors=True)


def join_cluster_dir(
    cluster_id: str, kind: str, peer: str, minimum: Thresholds | None
) -> SharedDir | None:
    """This process's :class:`SharedDir` with its marker put (``kind`` ``e`` for an engine,
    ``c`` for a client, named ``peer``), or ``None`` (the wire) if ``minimum`` is None
    (shared memory off) or the cluster has no private directory on this host."""
    if minimum is None:
        return None
    path = open_cluster_dir(cluster_id)
    if path is None:
        return None
    shared = SharedDir(path, minimum)
    return shared if shared.mark(kind, peer) else None


def _peer_marker(kind: str, peer: object) -> str | None:
    return f"{kind}-{peer}" if isinstance(peer, str) and _PEER_ID.fullmatch(peer) else None


class SharedDir:
    """One process's use of its cluster's directory: markers, staging, mapping.

    ``minimum``: the smallest buffers this process sends through shared memory.
    """

    def __init__(self, path: Path, minimum: Thresholds) -> None:
        self.path = path
        self.minimum = minimum
        self._dir = str(path)
        #: Peers whose marker was seen (a marker, once seen, stays true for the cluster).
        self._seen: set[str] = set()

    # -- markers ------------------------------------------------------------------------

    def mark(self, kind: str, peer: str) -> bool:
        """Put this process's marker (``kind`` ``e`` or ``c``) in the directory."""
        name = _peer_marker(kind, peer)
        if name is None:
            return False
        try:
            fd = os.open(
                os.path.join(self._dir, name),
                os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
        except OSError:
            return False
        os.close(fd)
        return True

    def unmark(self, kind: str, peer: str) -> None:
        name = _peer_marker(kind, peer)
        if name is not None:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._dir, name))

    def shares_with(self, kind: str, peer: object, *, cached: bool = True) -> bool:
        """Whether the peer (engine uuid, client session id) has its marker here;
        ``cached=False`` looks again even if it had (a client removes its marker when it
        closes, and a reply's file for a closed client would wait for the cluster's stop)."""
        name = _peer_marker(kind, peer)
        if name is None:
            return False
        if cached and name in self._seen:
            return True
        if os.path.isfile(os.path.join(self._dir, name)):
            self._seen.add(name)
            return True
        return False

    # -- sending ------------------------------------------------------------------------

    def any_large(self, buffers: Sequence[bytes | memoryview]) -> bool:
        """Whether a buffer is large enough for shared memory with any number of receivers."""
        least = min(self.minimum.many, self.minimum.one)
        return any(memoryview(b).nbytes >= least for b in buffers)

    def large(self, buffers: Sequence[bytes | memoryview], receivers: int) -> list[int]:
        """Indices of the buffers this process sends to ``receivers`` through shared memory."""
        least = self.minimum.minimum(receivers)
        return [i for i, b in enumerate(buffers) if memoryview(b).nbytes >= least]

    def stage(self, data: bytes | memoryview, receivers: int) -> list[str] | None:
        """Write ``data`` once; one name (a hard link) per receiver, or ``None`` if it
        could not be written (a full tmpfs): then it goes over the wire."""
        names = [secrets.token_hex(16) for _ in range(receivers)]
        first = os.path.join(self._dir, names[0])
        try:
            if not self._has_room(memoryview(data).nbytes):
                return None
            fd = _create(first)
        except OSError:
            return None
        made = 1
        try:
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
            for name in names[1:]:
                os.link(first, os.path.join(self._dir, name))
                made += 1
        except BaseException as exc:  # a full tmpfs, or Ctrl-C mid-write: nothing stays
            self.unlink(names[:made])
            if isinstance(exc, OSError):
                return None
            raise
        return names

    def stage_split(
        self,
        data: bytes | memoryview,
        parts: int,
        run_all: Callable[[Sequence[Callable[[], None]]], None],
    ) -> list[tuple[str, int]] | None:
        """Write ``data`` for one receiver as up to ``parts`` files (:func:`split_sizes`),
        their writes run by ``run_all`` (which runs every callable, at once if it can, and
        raises the first exception); ``[(name, size), ...]`` in order, or ``None`` if
        they could not be written (a full tmpfs): then it goes over the wire."""
        view = _byte_view(data)
        sizes = split_sizes(view.nbytes, parts)
        names = [secrets.token_hex(16) for _ in sizes]
        made = 0
        try:
            if not self._has_room(view.nbytes):
                return None
            writes, offset = [], 0
            for name, size in zip(names, sizes, strict=True):
                path = os.path.join(self._dir, name)
                os.close(_create(path))
                made += 1
                part = view[offset : offset + size]
                # Each write opens its own descriptor: one interrupted caller cannot close
                # a descriptor a write still uses (whose number could be reused).
                writes.append(lambda path=path, part=part: _write_file(path, part))
                offset += size
            run_all(writes)
        except BaseException as exc:  # a full tmpfs, or Ctrl-C mid-write: nothing stays
            self.unlink(names[:made])
            if isinstance(exc, OSError):
                return None
            raise
        return list(zip(names, sizes, strict=True))

    def _has_room(self, nbytes: int) -> bool:
        """Whether ``nbytes`` fit: else a write would end in ENOSPC after writing what fits
        (a container's /dev/shm is often 64 MB). Raises OSError."""
        room = os.statvfs(self._dir)
        return room.f_bavail * room.f_frsize >= nbytes

    def unlink(self, names: Sequence[str]) -> None:
        """Remove names handed out (a receiver that mapped its name removed it already)."""
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._dir, name))

    # -- receiving ----------------------------------------------------------------------

    def map(self, name: object, size: object) -> memoryview:
        """The file ``name`` of ``size`` bytes, mapped copy-on-write and unlinked.

        Raises :class:`SharedMemoryError` (one line) if the name is no data name, or the
        file is missing, not a regular file of this user, or of another size.
        """
        fd, nbytes = self._open(name, size)
        try:
            # MAP_PRIVATE: writable, and a write copies the page for this process only.
            return memoryview(mmap.mmap(fd, nbytes, access=mmap.ACCESS_COPY))
        except OSError as exc:
            raise SharedMemoryError(f"shared-memory buffer {name}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def map_parts(self, names: Sequence[object], sizes: Sequence[object]) -> memoryview:
        """The files ``names`` (a buffer's parts, :meth:`stage_split`) mapped copy-on-write
        side by side into one range, as one memoryview, and unlinked.

        Raises :class:`SharedMemoryError` (one line) as :meth:`map` does, or if a part but
        the last is no whole number of :data:`SPLIT_ALIGN` bytes. Every name is unlinked,
        even after a failure.
        """
        if not 1 <= len(names) == len(sizes) <= _MAX_PARTS:
            raise SharedMemoryError(f"not a shared-memory buffer's parts: {len(names)} names")
        opened: list[tuple[int, int]] = []
        try:
            for name, size in zip(names, sizes, strict=True):
                opened.append(self._open(name, size))
            if any(nbytes % SPLIT_ALIGN for _, nbytes in opened[:-1]):
                raise SharedMemoryError(
                    f"shared-memory buffer parts of {[n for _, n in opened]} bytes:"
                    f" all but the last must be multiples of {SPLIT_ALIGN}"
                )
            return _map_side_by_side(opened)
        except SharedMemoryError:
            rest = names[len(opened) + 1 :]  # not opened, so not unlinked yet
            self.unlink([name for name in rest if isinstance(name, str)])
            raise
        finally:
            for fd, _ in opened:
                os.close(fd)

    def _open(self, name: object, size: object) -> tuple[int, int]:
        """``(fd, size)`` of the data file ``name`` of ``size`` bytes; its name is unlinked.

        Raises :class:`SharedMemoryError`; see :meth:`map`.
        """
        if not isinstance(name, str) or not _DATA_NAME.fullmatch(name):
            raise SharedMemoryError(f"not a shared-memory buffer name: {name!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise SharedMemoryError(f"not a shared-memory buffer size: {size!r}")
        path = os.path.join(self._dir, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise SharedMemoryError(
                f"shared-memory buffer {name} is not in {self._dir}"
                f" ({exc.strerror}; was it sent from another host?)"
            ) from None
        try:
            os.unlink(path)  # its one owner is this receiver: the name goes at once
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size != size:
                raise SharedMemoryError(
                    f"shared-memory buffer {name}: not a {size}-byte file of this user"
                )
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, OSError):
                raise SharedMemoryError(f"shared-memory buffer {name}: {exc.strerror}") from None
            raise
        return fd, size

    def resolve(self, buffers: Sequence[bytes], refs: object) -> list[bytes]:
        """``buffers`` with the frames ``refs`` (a message's ``loom_shm``) names mapped in.

        Every file ``refs`` names is unlinked, even if another one fails. Raises
        :class:`SharedMemoryError` for a malformed reference or a file that cannot be mapped.
        """
        entries = _parse_refs(refs, len(buffers))
        resolved = list(buffers)
        failure: SharedMemoryError | None = None
        for index, name, size in entries:
            try:
                if isinstance(name, list) and isinstance(size, list):
                    resolved[index] = self.map_parts(name, size)  # type: ignore[call-overload]
                else:
                    resolved[index] = self.map(name, size)  # type: ignore[call-overload]
            except SharedMemoryError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return resolved


def split_sizes(total: int, parts: int) -> list[int]:
    """The sizes of ``total`` bytes' parts: at most ``parts`` of them, each at least
    :data:`SPLIT_PART_MIN` bytes, all but the last multiples of :data:`SPLIT_ALIGN`."""
    count = max(1, min(parts, _MAX_PARTS, total // SPLIT_PART_MIN))
    size = total // count // SPLIT_ALIGN * SPLIT_ALIGN
    return [size] * (count - 1) + [total - size * (count - 1)]


def _parse_refs(refs: object, frames: int) -> list[tuple[int, object, object]]:
    """``[(index, name, size)...]`` from a ``loom_shm`` value, a name and size being lists
    for a buffer in parts; names and sizes are checked by :meth:`SharedDir.map` and
    :meth:`SharedDir.map_parts`. Raises :class:`SharedMemoryError`."""
    if not isinstance(refs, list):
        raise SharedMemoryError(f"{METADATA_KEY} must be a list, not {type(refs).__name__}")
    entries: list[tuple[int, object, object]] = []
    indices: set[int] = set()
    for ref in refs:
        match ref:
            case [int(index), name, size] if 0 <= index < frames and index not in indices:
                if isinstance(name, list) != isinstance(size, list):
                    raise SharedMemoryError(f"not a shared-memory reference: {ref!r:.80}")
                indices.add(index)
                entries.append((index, name, size))
            case _:
                raise SharedMemoryError(f"not a shared-memory reference: {ref!r:.80}")
    return entries


def _map_side_by_side(parts: Sequence[tuple[int, int]]) -> memoryview:
    """The files of ``parts`` (``(fd, size)`` each) mapped copy-on-write one after another.

    Python's mmap cannot place a mapping, so an anonymous private range of the whole size
    is reserved with it and each file mapped over its slice with libc's ``mmap(MAP_FIXED)``;
    closing (or dropping) that one mmap object unmaps the range, files included. Where
    libc cannot be called (or a placement fails, which may leave a hole in the range), the
    parts are read into new memory instead: a copy, but the same bytes.
    """
    total = sum(size for _, size in parts)
    place = _fixed_mmap()
    if place is not None:
        flags, prot = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, mmap.PROT_READ | mmap.PROT_WRITE
        try:
            region = mmap.mmap(-1, total, flags=flags, prot=prot)
        except OSError as exc:
            raise SharedMemoryError(f"{total} bytes of address space: {exc.strerror}") from None
        anchor = ctypes.c_char.from_buffer(region)
        address = ctypes.addressof(anchor)
        del anchor  # an exported buffer would keep the region from ever closing
        placed = True
        for fd, size in parts:
            placed = placed and place(address, size, fd)
            address += size
        if placed:
            return memoryview(region)
        region.close()
    whole = memoryview(bytearray(total))
    offset = 0
    for fd, size in parts:
        _read_all(fd, whole[offset : offset + size])
        offset += size
    return whole


#: Linux's ``MAP_FIXED`` on the machines listed (Alpha's and PA-RISC's differ: they read).
_MAP_FIXED: Final = 0x10
_MAP_FIXED_MACHINES: Final = ("x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x", "riscv64")


@functools.cache
def _fixed_mmap() -> Callable[[int, int, int], bool] | None:
    """``place(address, size, fd)``: map ``fd`` copy-on-write at ``address``, whether it
    did; ``None`` where libc's mmap cannot be called (then the caller reads instead)."""
    if os.uname().machine not in _MAP_FIXED_MACHINES:
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).mmap
    except (OSError, AttributeError):
        return None
    call.restype = ctypes.c_void_p
    word, size_t = ctypes.c_int, ctypes.c_size_t
    call.argtypes = [ctypes.c_void_p, size_t, word, word, word, ctypes.c_long]
    prot = mmap.PROT_READ | mmap.PROT_WRITE
    flags = mmap.MAP_PRIVATE | _MAP_FIXED

    def place(address: int, size: int, fd: int) -> bool:
        return bool(call(address, size, prot, flags, fd, 0) == address)  # else MAP_FAILED

    return place


def _create(path: str) -> int:
    """A new file (never an existing one, never through a symlink), owner-only."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, 0o600)


def _byte_view(data: bytes | memoryview) -> memoryview:
    view = memoryview(data)
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = _byte_view(data)
    done, total = 0, view.nbytes
    while done < total:
        done += os.write(fd, view[done : done + _WRITE_CHUNK])


def _write_file(path: str, data: memoryview) -> None:
    """Write ``data`` into the existing file ``path`` (made by :func:`_create`)."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def _read_all(fd: int, into: memoryview) -> None:
    done, total = 0, into.nbytes
    while done < total:
        got = os.preadv(fd, [into[done : done + _WRITE_CHUNK]], done)
        if got == 0:
            raise SharedMemoryError(f"shared-memory buffer part shorter than {total} bytes")
        done += got
