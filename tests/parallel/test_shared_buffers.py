"""Large buffers through shared memory between a client and engines of one host.

The pure part (``parallel/protocol/_shm.py``), in a temporary directory: names are
names (no path traversal), mappings are copy-on-write and private, every name has one
owner that unlinks it, a write that fails leaves nothing. Then a real ipc cluster (two
engines, one module-scoped cluster): push, pull, scatter, gather and apply of numpy
arrays, bytes, bytearray and memoryview give the right values; the engines' arrays are
writable and their own; nothing stays in the cluster's ``/dev/shm`` directory after
each call, after an engine is killed with a push waiting for it, and after the
cluster's stop; a client or engine without the other's marker (another host) and a
plaintext tcp cluster use the wire. An array that arrived over ZeroMQ is read-only
(a view of libzmq's frame), one mapped from shared memory writable: that is how the
tests tell which way a buffer went.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _cluster_support import isolate, main_function, running_cluster
from _support import wait_gone

from parallel import Client, Cluster, EngineError, RemoteError
from parallel.client._asyncresult import AsyncResult
from parallel.engine._write_threads import run_at_once, write_parts
from parallel.protocol import _shm as shm_module
from parallel.protocol._serialize import serialize_call
from parallel.protocol._shm import (
    METADATA_KEY,
    SPLIT_ALIGN,
    SPLIT_PART_MIN,
    SharedDir,
    SharedMemoryError,
    Thresholds,
    cluster_dir,
    open_cluster_dir,
    shm_threshold,
    split_sizes,
)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs /dev/shm (Linux tmpfs)"),
]

#: 2.4 MB: above the default threshold (1 MiB).
N = 300_000
_DATA = re.compile(r"^[0-9a-f]{32}$")


# -- the pure part --------------------------------------------------------------------


@pytest.fixture
def shared(tmp_path: Path) -> SharedDir:
    path = tmp_path / "shm"
    path.mkdir(mode=0o700)
    return SharedDir(path, Thresholds(1024, 1024))


def _data_files(path: Path) -> list[str]:
    return sorted(name for name in os.listdir(path) if _DATA.match(name))


def test_thresholds_from_the_environment(shared: SharedDir) -> None:
    assert shm_threshold({}) == Thresholds(1 << 20, 32 << 20)
    assert shm_threshold({"LOOM_SHM_MIN": "4096"}) == Thresholds(4096, 32 << 20)
    assert shm_threshold({"LOOM_SHM_MIN_SINGLE": "5"}) == Thresholds(1 << 20, 5)
    assert shm_threshold({"LOOM_SHM": "off", "LOOM_SHM_MIN": "4096"}) is None
    with pytest.raises(ValueError, match="LOOM_SHM_MIN must be a positive number of bytes"):
        shm_threshold({"LOOM_SHM_MIN": "1M"})
    with pytest.raises(ValueError, match="LOOM_SHM_MIN_SINGLE must be a positive number"):
        shm_threshold({"LOOM_SHM_MIN_SINGLE": "0"})
    by_size = SharedDir(shared.path, Thresholds(many=100, one=1000))
    frames = [b"p", b"x" * 100, b"x" * 999, b"x" * 1000]
    assert by_size.large(frames, 4) == [1, 2, 3]
    assert by_size.large(frames, 1) == [3]


def test_one_write_one_name_per_receiver_mapped_private_and_unlinked(shared: SharedDir) -> None:
    data = np.arange(10_000, dtype=np.int64)
    names = shared.stage(data.tobytes(), 3)
    assert names is not None
    assert len(set(names)) == 3
    assert _data_files(shared.path) == sorted(names)
    assert {os.stat(shared.path / n).st_ino for n in names} == {
        os.stat(shared.path / names[0]).st_ino
    }  # hard links: written once
    assert (os.stat(shared.path / names[0]).st_mode & 0o777) == 0o600
    views = [shared.map(name, data.nbytes) for name in names]
    assert _data_files(shared.path) == []  # each receiver unlinked its name at once
    arrays = [np.frombuffer(v, dtype=np.int64) for v in views]
    arrays[0][0] = -1  # copy on write: the others (and the sender) do not see it
    assert arrays[0][0] == -1
    assert arrays[1][0] == 0
    assert arrays[2][0] == 0
    assert data[0] == 0
    assert all((a[1:] == data[1:]).all() for a in arrays)


@pytest.mark.parametrize(
    "name", ["../etc/passwd", "/etc/passwd", "g" * 32, "0" * 31, "0" * 32 + "\n", 7, None]
)
def test_a_reference_is_a_name_not_a_path(shared: SharedDir, name: object) -> None:
    with pytest.raises(SharedMemoryError, match="not a shared-memory buffer name"):
        shared.map(name, 10)


def test_missing_or_wrong_size_files_are_one_line_errors(shared: SharedDir) -> None:
    with pytest.raises(SharedMemoryError, match=r"is not in .*another host"):
        shared.map("0" * 32, 10)
    names = shared.stage(b"x" * 2000, 1)
    assert names is not None
    with pytest.raises(SharedMemoryError, match="not a 10-byte file of this user"):
        shared.map(names[0], 10)
    assert _data_files(shared.path) == []  # unlinked all the same


@pytest.mark.parametrize(
    "refs",
    [{"a": 1}, [[5, "0" * 32, 10]], [[0, "0" * 32]], [[1, "0" * 32, 10], [1, "1" * 32, 10]]],
)
def test_malformed_references_are_refused(shared: SharedDir, refs: object) -> None:
    with pytest.raises(SharedMemoryError):
        shared.resolve([b"pickle", b""], refs)


def test_a_failed_write_leaves_nothing_and_says_none(shared: SharedDir) -> None:
    """A full tmpfs (ENOSPC) stands in as a file size limit (EFBIG): the buffer goes over
    the wire, and the half-written file and its links are gone."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        assert shared.stage(b"x" * 100_000, 2) is None
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert os.listdir(shared.path) == []


def test_a_buffer_larger_than_the_free_space_is_not_written(
    shared: SharedDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A /dev/shm of 40 KB free (a container's is often 64 MB): no partial write first."""

    class Small:
        f_bavail, f_frsize = 10, 4096

    monkeypatch.setattr(os, "statvfs", lambda path: Small)
    assert shared.stage(b"x" * 100_000, 2) is None
    assert os.listdir(shared.path) == []
    assert shared.stage(b"x" * 40_000, 2) is not None  # what fits is written


def test_an_interrupted_write_leaves_nothing_and_propagates(
    shared: SharedDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(fd: int, data: object) -> None:
        os.write(fd, b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(shm_module, "_write_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        shared.stage(b"x" * 100_000, 3)
    assert os.listdir(shared.path) == []


def test_split_sizes_are_aligned_parts_of_at_least_the_minimum() -> None:
    mib = 1 << 20
    assert (16 * mib, 2 * mib) == (SPLIT_PART_MIN, SPLIT_ALIGN)
    assert split_sizes(100_000_000, 2) == [46 * mib, 100_000_000 - 46 * mib]
    assert split_sizes(100_000_000, 4) == [22 * mib] * 3 + [100_000_000 - 66 * mib]
    assert split_sizes(40 * mib, 4) == [20 * mib, 20 * mib]  # parts of at least 16 MiB
    assert split_sizes(31 * mib, 4) == [31 * mib]
    assert split_sizes(100, 2) == [100]
    assert split_sizes(100_000_000, 1) == [100_000_000]
    assert split_sizes(100 << 30, 1000) == [(100 << 30) // 64] * 64  # at most 64 parts


def _stage_in_parts(shared: SharedDir, data: bytes, parts: int) -> list[tuple[str, int]]:
    staged = shared.stage_split(data, parts, run_at_once)
    assert staged is not None
    return staged


def test_parts_written_at_once_map_back_side_by_side_private_and_unlinked(
    shared: SharedDir,
) -> None:
    data = np.arange(5 * SPLIT_PART_MIN // 8 + 3, dtype=np.int64)  # 80 MiB and 24 bytes
    staged = _stage_in_parts(shared, data.tobytes(), 4)
    names, sizes = [n for n, _ in staged], [s for _, s in staged]
    assert sizes == split_sizes(data.nbytes, 4)
    assert len(sizes) == 4
    assert _data_files(shared.path) == sorted(names)
    assert all((os.stat(shared.path / n).st_mode & 0o777) == 0o600 for n in names)
    view = shared.map_parts(names, sizes)
    assert _data_files(shared.path) == []  # the receiver unlinked every part at once
    array = np.frombuffer(view, dtype=np.int64)
    assert (array == data).all()
    array[-1] = -1  # copy on write, across the last part's partial page too
    assert array[-1] == -1
    assert data[-1] == data.size - 1
    refs = [[1, names, sizes]]
    with pytest.raises(SharedMemoryError, match="is not in"):  # each name has one owner
        shared.resolve([b"pickle", b""], refs)


def test_a_resolved_reference_in_parts_is_one_buffer(shared: SharedDir) -> None:
    data = bytes(range(256)) * (SPLIT_PART_MIN // 128)  # 32 MiB: two parts
    staged = _stage_in_parts(shared, data, 2)
    refs = [[1, [n for n, _ in staged], [s for _, s in staged]]]
    pickle, buffer = shared.resolve([b"pickle", b""], refs)
    assert pickle == b"pickle"
    assert memoryview(buffer).nbytes == len(data)
    assert bytes(buffer) == data


def test_parts_are_read_where_they_cannot_be_mapped_side_by_side(
    shared: SharedDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(2 * SPLIT_PART_MIN + 5)
    staged = _stage_in_parts(shared, data, 2)
    monkeypatch.setattr(shm_module, "_fixed_mmap", lambda: None)
    view = shared.map_parts([n for n, _ in staged], [s for _, s in staged])
    assert bytes(view) == data
    assert not view.readonly
    assert _data_files(shared.path) == []


def test_misaligned_or_malformed_parts_are_refused_and_every_name_unlinked(
    shared: SharedDir,
) -> None:
    first = shared.stage(b"a" * 5000, 1)  # a part but the last that is no multiple of 2 MiB
    last = shared.stage(b"b" * 7000, 1)
    assert first is not None
    assert last is not None
    with pytest.raises(SharedMemoryError, match="all but the last must be multiples of"):
        shared.map_parts([first[0], last[0]], [5000, 7000])
    assert _data_files(shared.path) == []
    after = shared.stage(b"c" * 100, 1)
    assert after is not None
    with pytest.raises(SharedMemoryError, match="not a shared-memory buffer name"):
        shared.map_parts(["../x", after[0]], [100, 100])
    assert _data_files(shared.path) == []  # the part after the bad name went too
    with pytest.raises(SharedMemoryError, match="0 names"):
        shared.map_parts([], [])
    with pytest.raises(SharedMemoryError, match="65 names"):
        shared.map_parts(["0" * 32] * 65, [SPLIT_ALIGN] * 65)
    for refs in ([[1, ["0" * 32], 10]], [[1, "0" * 32, [10]]], [[1, ["0" * 32], [10, 20]]]):
        with pytest.raises(SharedMemoryError):
            shared.resolve([b"pickle", b""], refs)


def test_parts_that_cannot_all_be_written_leave_nothing(
    shared: SharedDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = shm_module._write_all
    calls: list[int] = []

    def second_fails(fd: int, data: memoryview) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_write(fd, data)

    monkeypatch.setattr(shm_module, "_write_all", second_fails)
    assert shared.stage_split(b"x" * (2 * SPLIT_PART_MIN), 2, run_at_once) is None
    assert os.listdir(shared.path) == []

    def interrupted(fd: int, data: memoryview) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(shm_module, "_write_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        shared.stage_split(b"x" * (2 * SPLIT_PART_MIN), 2, run_at_once)
    assert os.listdir(shared.path) == []


def test_run_at_once_runs_every_call_on_its_own_thread_and_raises_the_first_failure() -> None:
    seen: list[str] = []
    run_at_once(
        [lambda i=i: seen.append(f"{i}:{threading.current_thread().name}") for i in range(3)]
    )
    assert sorted(seen) == ["0:MainThread", "1:loom-shm-write", "2:loom-shm-write"]

    def fails() -> None:
        raise OSError(28, "No space left on device")

    after: list[int] = []
    with pytest.raises(OSError, match="No space left"):
        run_at_once([lambda: after.append(0), fails, lambda: after.append(2)])
    assert sorted(after) == [0, 2]  # the others ran to the end all the same
    writers = [t for t in threading.enumerate() if t.name == "loom-shm-write"]
    for thread in writers:  # each ends right after its call: none is left running
        thread.join(10)
    assert [t for t in writers if t.is_alive()] == []
    assert 1 <= write_parts() <= 4


def test_run_at_once_interrupted_in_a_join_returns_only_after_every_write() -> None:
    """Ctrl-C while the main thread waits for a writer: the writer finishes first (its
    descriptor is closed after run_at_once returns), then the interrupt is raised."""
    started, seen, finished = threading.Event(), threading.Event(), threading.Event()

    def on_interrupt(signum: int, frame: object) -> None:
        seen.set()
        raise KeyboardInterrupt

    def writer() -> None:
        assert started.wait(10)  # the main thread runs its own call: every thread started
        os.kill(os.getpid(), signal.SIGINT)  # handled on the main thread, in its join
        assert seen.wait(10)
        finished.set()

    old = signal.signal(signal.SIGINT, on_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_at_once([started.set, writer])
    finally:
        signal.signal(signal.SIGINT, old)
    assert finished.is_set()


def test_a_directory_others_can_enter_is_not_used(tmp_path: Path) -> None:
    cluster_id = f"test{os.getpid()}"
    path = cluster_dir(cluster_id)
    path.mkdir(mode=0o700)
    try:
        assert open_cluster_dir(cluster_id) == path
        path.chmod(0o770)
        assert open_cluster_dir(cluster_id) is None
    finally:
        path.rmdir()
    path.symlink_to(tmp_path)
    try:
        assert open_cluster_dir(cluster_id) is None
    finally:
        path.unlink()


# -- a real cluster -------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Client]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate(monkeypatch, tmp_path_factory.mktemp("shm"))
        monkeypatch.delenv("LOOM_SHM", raising=False)
        monkeypatch.delenv("LOOM_SHM_MIN", raising=False)
        # 2.4 MB arrays for one receiver (pull, scatter) too; a broadcast's default is 1 MiB.
        monkeypatch.setenv("LOOM_SHM_MIN_SINGLE", str(1 << 20))
        # Records keep requests up to 16 MiB here, so a shared-memory one is recorded.
        monkeypatch.setenv("LOOM_RECORD_REQUEST_LIMIT", str(16 << 20))
        with running_cluster(2) as running:
            yield running


@pytest.fixture
def client(cluster: tuple[Cluster, Client]) -> Iterator[Client]:
    rc = cluster[1]
    yield rc
    assert _data_files(_shm_dir(rc)) == [], "a shared-memory buffer was left behind"


def _shm_dir(rc: Client) -> Path:
    return cluster_dir(rc.info.cluster_id)


def test_the_cluster_has_a_private_directory_with_everyones_marker(client: Client) -> None:
    path = _shm_dir(client)
    st = os.lstat(path)
    assert (st.st_mode & 0o777) == 0o700
    assert st.st_uid == os.geteuid()
    names = set(os.listdir(path))
    assert f"c-{client.session.session_id}" in names
    assert {f"e-{record.uuid}" for record in client._records.values()} <= names


def _remote(expr: str) -> Callable[..., Any]:
    """A function of ``__main__`` returning ``expr``, evaluated in the engine's namespace."""
    return main_function(f"def f(*args):\n    return {expr}\n", "f")


def test_push_writes_once_and_every_engine_gets_its_own_writable_array(client: Client) -> None:
    view = client[:]
    a = np.arange(N, dtype=np.float64)
    view.push({"x": a}, block=True)
    e0, e1 = client.ids[:2]
    assert client[e0].apply_sync(_remote("x.flags.writeable")) is True
    client[e0].execute("x[0] = 1000.0", block=True)  # copy on write: engine 0's page only
    assert client[e0].apply_sync(_remote("float(x.sum())")) == float(a.sum()) + 1000.0
    assert client[e1].apply_sync(_remote("float(x[0])")) == 0.0
    assert a[0] == 0.0


def test_an_engine_named_twice_gets_a_name_for_each_request(client: Client) -> None:
    e0 = client.ids[0]
    a = np.arange(N, dtype=np.float64)
    assert client[[e0, e0]].apply_sync(_remote("float(args[0].sum())"), a) == [a.sum()] * 2


def test_pull_maps_the_engines_result(client: Client) -> None:
    client[:].execute(f"import numpy as np; y = np.arange({N}) * 2", block=True)
    e0 = client.ids[0]
    y = client[e0].pull("y", block=True)
    assert (y == np.arange(N) * 2).all()
    assert y.flags.writeable  # mapped copy-on-write, not a view of a ZeroMQ frame
    y[0] = 7  # the engine's stays as it was
    assert client[e0].apply_sync(_remote("int(y[0])")) == 0
    both = client[:].pull(["y"], block=True)
    assert [int(v[0][-1]) for v in both] == [2 * (N - 1)] * 2


def _mapped_ranges(directory: Path) -> list[tuple[int, int]]:
    """The client's mappings of files that were in ``directory`` (start, end)."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith(f"{directory}/"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((start, end))
    return sorted(ranges)


def test_a_large_pull_arrives_in_parts_mapped_as_one_array(client: Client) -> None:
    """Above 32 MiB an engine writes its reply's buffer as one file per core (up to 4),
    written at once, and the client maps them side by side: one contiguous array."""
    size = 5 * SPLIT_PART_MIN // 8  # 80 MiB of float64
    e0 = client.ids[0]
    client[e0].execute(f"import numpy as np; big = np.arange({size}, dtype='float64')", block=True)
    before = _mapped_ranges(_shm_dir(client))
    big = client[e0].pull("big", block=True)
    assert big.shape == (size,)
    assert (big == np.arange(size, dtype="float64")).all()
    parts = [r for r in _mapped_ranges(_shm_dir(client)) if r not in before]
    assert len(parts) == len(split_sizes(big.nbytes, write_parts()))
    start = big.__array_interface__["data"][0]
    assert parts[0][0] == start  # side by side, from the array's first byte on
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    assert parts[-1][1] >= start + big.nbytes
    big[0] = -1.0
    assert client[e0].apply_sync(_remote("float(big[0])")) == 0.0
    client[e0].execute("del big", block=True)
    del big


def test_scatter_and_gather_of_large_arrays(client: Client) -> None:
    rows = np.arange(4 * N, dtype=np.float64).reshape(4, N)
    client[:].scatter("part", list(rows), block=True)
    sums = client[:].apply_sync(_remote("[float(r.sum()) for r in part]"))
    assert sums == [[float(r.sum()) for r in rows[:2]], [float(r.sum()) for r in rows[2:]]]
    gathered = client[:].gather("part", block=True)
    assert len(gathered) == 4
    assert all((g == r).all() for g, r in zip(gathered, rows, strict=True))


def test_apply_with_bytes_bytearray_and_memoryview(client: Client) -> None:
    raw = os.urandom(2 << 20)
    mutable = bytearray(raw[::-1])
    ints = memoryview(np.arange(N, dtype=np.int32).tobytes()).cast("i")
    echo = _remote("(args[0], args[1], args[2].tolist()[-1], args[2].format, args[2].nbytes)")
    for b, ba, last, fmt, nbytes in client[:].apply_sync(echo, raw, mutable, ints):
        assert (b, ba, type(b), type(ba)) == (raw, mutable, bytes, bytearray)
        assert (last, fmt, nbytes) == (N - 1, "i", ints.nbytes)
    results = client[:].apply_sync(_remote("bytes(range(256)) * 12_000"))
    assert results == [bytes(range(256)) * 12_000] * 2


def test_the_durable_record_holds_the_data_not_a_file(client: Client) -> None:
    """A pulled 2.4 MB result went to the client as a file the client unlinked; the
    controller's record (from the engine's recorder, which sees the buffers themselves)
    still has it."""
    client[:].execute(f"import numpy as np; r = np.arange({N}) + 5", block=True)
    ar = client[client.ids[0]].pull("r", block=False)
    assert (ar.get(timeout=30) == np.arange(N) + 5).all()
    other = Client(client.cluster_file)
    try:
        deadline = time.monotonic() + 30
        while other.result_status(ar.msg_ids)["completed"] != ar.msg_ids:
            assert time.monotonic() < deadline, "the result was never recorded"
            other.wait(timeout=0.05)  # pumps the sockets: the record arrives as an event
        assert (other.get_result(ar.msg_ids[0]).get(timeout=30) == np.arange(N) + 5).all()
    finally:
        other.close()


def test_a_recorded_request_keeps_its_data_and_resubmits(client: Client) -> None:
    """The engine's recorder saw the mapped buffers, not the file names (unlinked by now)."""
    a = np.arange(N, dtype=np.float64)
    ar = client[client.ids[0]].apply_async(_remote("float(args[0].sum())"), a)
    assert ar.get(timeout=30) == a.sum()
    deadline = time.monotonic() + 30
    while client.result_status(ar.msg_ids)["completed"] != ar.msg_ids:
        assert time.monotonic() < deadline, "the task was never recorded"
        client.wait(timeout=0.05)  # pumps the sockets while the record is on its way
    assert client.resubmit(ar.msg_ids[0]).get(timeout=30) == a.sum()
    [record] = client.db_query({"msg_id": ar.msg_ids[0]}, keys=["metadata"])
    assert METADATA_KEY not in record["metadata"]


def test_a_reference_outside_the_directory_is_refused_by_the_engine(client: Client) -> None:
    engine = client.ids[0]
    frames = serialize_call(len, [b"x" * 2000], {})
    frames[1] = b""
    refs = [[1, "../../../etc/passwd", 2000]]
    msg_id = client.send_request(engine, "apply_request", {}, frames, {METADATA_KEY: refs})
    result = client.track(AsyncResult(client, [msg_id], single=True))
    with pytest.raises(RemoteError, match="not a shared-memory buffer name"):
        result.get(timeout=30)
    assert client[engine].apply_sync(_remote("1")) == 1  # and it lives on


def test_peers_on_another_host_use_the_wire(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client whose marker the engines cannot see (shared memory off here: as on another
    host) gets read-only arrays over the wire both ways; so does a push to an engine whose
    marker this client cannot see."""
    monkeypatch.setenv("LOOM_SHM", "off")
    far = Client(client.cluster_file)
    monkeypatch.delenv("LOOM_SHM")
    try:
        far[:].push({"w": np.ones(N)}, block=True)
        assert far[:].apply_sync(_remote("w.flags.writeable")) == [False, False]
        pulled = far[far.ids[0]].pull("w", block=True)
        assert not pulled.flags.writeable
        assert pulled.sum() == N
    finally:
        far.close()
    e0 = client.ids[0]
    marker = _shm_dir(client) / f"e-{client._records[e0].uuid}"
    marker.unlink()
    near = Client(client.cluster_file)  # has not seen engine e0's marker
    try:
        near[e0].push({"v": np.ones(N)}, block=True)
        assert near[e0].apply_sync(_remote("v.flags.writeable")) is False
        near[e0].execute(f"import numpy as np; u = np.ones({N})", block=True)
        assert near[e0].pull("u", block=True).flags.writeable  # the engine sees near's marker
    finally:
        near.close()
        marker.touch(mode=0o600)


def test_a_plaintext_tcp_cluster_uses_the_wire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate(monkeypatch, tmp_path)
    with running_cluster(1, transport="tcp") as (_, rc):
        assert not rc.info.authenticates_peers
        assert not _shm_dir(rc).exists()
        rc[:].push({"t": np.ones(N)}, block=True)
        assert rc[:].apply_sync(_remote("t.flags.writeable")) == [False]
        assert not rc[0].pull("t", block=True).flags.writeable


def test_a_bad_threshold_is_a_one_line_error(
    cluster: tuple[Cluster, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOM_SHM_MIN", "lots")
    with pytest.raises(ValueError, match=r"^LOOM_SHM_MIN must be a positive number of bytes"):
        Client(cluster[1].cluster_file)


def test_an_engine_killed_with_a_push_waiting_leaves_nothing_and_stop_removes_the_rest(
    cluster: tuple[Cluster, Client],
) -> None:
    """Last in the module: it kills an engine and stops the cluster."""
    running, client = cluster
    path = _shm_dir(client)
    victim = client.ids[-1]
    busy = client[victim].apply_async(time.sleep, 60)
    pushed = client[victim].push({"z": np.ones(N)})
    assert len(_data_files(path)) == 1  # the name waits for the busy engine
    os.kill(client._records[victim].pid, signal.SIGKILL)
    with pytest.raises(EngineError):
        pushed.get(timeout=30)
    with contextlib.suppress(EngineError):
        busy.get(timeout=30)
    assert _data_files(path) == []  # the client unlinked the name its lost engine held
    # What a crashed client leaves (a name nobody will map) goes with the cluster's stop.
    leftover = path / ("ab" * 16)
    leftover.write_bytes(b"left behind")
    running.stop_cluster_sync()
    assert not path.exists()


def test_a_killed_controllers_directory_goes_with_the_clusters_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate(monkeypatch, tmp_path)
    with running_cluster(1) as (running, rc):
        path = _shm_dir(rc)
        rc[:].push({"big": np.ones(N)}, block=True)
        (path / ("cd" * 16)).write_bytes(b"a crashed client's name")
        assert running._process is not None
        os.kill(running._process.pid, signal.SIGKILL)  # no cleanup of its own
        assert wait_gone(running._process.pid, 30)
        assert path.is_dir()
        running.stop_cluster_sync()  # what a crashed controller left
        assert not path.exists()
