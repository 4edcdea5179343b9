"""The ``mpi`` launcher against real Open MPI (``mpiexec``) and mpi4py: one engine per
rank, engine id = rank, a ``%px`` cell running an MPI collective, nothing left after stop,
and an ``mpiexec`` that fails explained by what it printed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _launch_fixtures import (
    all_gone,
    cleaned_up,
    isolate_launch,
    kill_pid,
    launcher_pid,
    secrets_exposed,
)

from parallel import Cluster, ClusterUnavailable


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_launch(monkeypatch, tmp_path)


def test_engines_are_mpi_ranks_with_id_equal_to_rank_and_px_runs_a_collective() -> None:
    cluster = Cluster(n=4, engines="mpi")
    with cleaned_up(cluster) as pids:
        rc = cluster.start_and_connect_sync(timeout=90)
        mpiexec = launcher_pid(cluster)
        assert mpiexec is not None
        pids.add(mpiexec)
        pids |= {record.pid for record in rc._records.values()}
        assert rc.ids == [0, 1, 2, 3]
        ranks = rc[:].apply_sync(lambda: __import__("mpi4py").MPI.COMM_WORLD.rank)
        assert ranks == [0, 1, 2, 3]  # the documented mapping: engine i is rank i
        sizes = rc[:].apply_sync(lambda: __import__("mpi4py").MPI.COMM_WORLD.size)
        assert sizes == [4, 4, 4, 4]
        # One node: Open MPI's fast-start settings (_mpi.ONE_NODE_ENV); start-up's objects
        # frozen out of the way of collections, which run again (_node_engine).
        settled = rc[:].apply_sync(
            lambda: (
                __import__("os").environ.get("OMPI_MCA_pml"),
                __import__("gc").isenabled(),
                __import__("gc").get_freeze_count() > 0,
            )
        )
        assert settled == [("ob1", True, True)] * 4
        # MPI initialized on the main thread (where cells run), at mpi4py's default level.
        threading = rc[:].apply_sync(
            lambda: (lambda M: (M.Query_thread() == M.THREAD_MULTIPLE, M.Is_thread_main()))(
                __import__("mpi4py.MPI").MPI
            )
        )
        assert threading == [(True, True)] * 4
        assert secrets_exposed(rc.info) == []  # mpiexec and the ranks got the file's path

        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        no_history = Config()
        no_history.HistoryManager.enabled = False  # its saving thread would outlive the test
        shell = InteractiveShell.instance(config=no_history)
        try:
            rc.activate()
            result = shell.run_cell(
                "%px from mpi4py import MPI; total = MPI.COMM_WORLD.allreduce(MPI.COMM_WORLD.rank)"
            )
            assert result.success, result
        finally:
            InteractiveShell.clear_instance()
        assert rc[:].pull("total", block=True) == [6, 6, 6, 6]  # 0 + 1 + 2 + 3 on every rank

        cluster.stop_cluster_sync()
        assert all_gone(pids) == []


RANK_SCRIPT = """
import ctypes, importlib.util, sys, threading
from parallel.launchers._node_engine import _import_during_mpi_init

main = threading.current_thread()
module = _import_during_mpi_init("_mpi_probe_module")
assert module.IMPORTED_ON is not main, "the import ran on the main thread"
assert "mpi4py.MPI" not in sys.modules
flag = ctypes.c_int(0)
ctypes.CDLL(importlib.util.find_spec("mpi4py.MPI").origin).MPI_Initialized(ctypes.byref(flag))
assert flag.value == 1, "MPI is not initialized before mpi4py is imported"
from mpi4py import MPI
comm = MPI.COMM_WORLD
seen = (comm.allreduce(1), MPI.Query_thread() == MPI.THREAD_MULTIPLE, MPI.Is_thread_main())
every = comm.gather(seen)
if comm.rank == 0:
    print(every)
# A rank waiting for its turn (rank order) does not spin: Open MPI's blocking receive
# burnt a core for as long as it waited.
import time
from parallel.launchers._node_engine import wait_politely
if comm.rank == 0:
    time.sleep(1.0)  # a rank 0 that is late with the token
    comm.send("token", dest=1, tag=7)
else:
    cpu = time.process_time()
    assert wait_politely(comm.irecv(source=0, tag=7)) == "token"
    cpu = time.process_time() - cpu
    assert cpu < 0.05, f"waiting for the token took {cpu:.3f} s of CPU"
"""


def test_ranks_import_the_engine_while_mpi_init_runs_and_wait_their_turn_idle(
    tmp_path: Path,
) -> None:
    # MPI_Init (~0.3 s, GIL held when mpi4py calls it) overlaps the engine's imports: it
    # is called through ctypes on the main thread while a thread imports.
    (tmp_path / "_mpi_probe_module.py").write_text(
        "import threading\nIMPORTED_ON = threading.current_thread()\n"
    )
    env = {**os.environ, "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        ["mpiexec", "-n", "2", sys.executable, "-c", RANK_SCRIPT],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "[(2, True, True), (2, True, True)]", done.stdout + done.stderr


def test_a_controller_killed_with_sigkill_takes_its_ranks_and_mpiexec_along() -> None:
    cluster = Cluster(n=2, engines="mpi")
    with cleaned_up(cluster) as pids:
        rc = cluster.start_and_connect_sync(timeout=90)
        mpiexec = launcher_pid(cluster)
        assert mpiexec is not None
        ranks = {record.pid for record in rc._records.values()}
        pids |= ranks | {mpiexec}
        # Serving (an engine watches its controller from its hand-over, which comes
        # after its registration), then killed.
        assert len(rc[:].apply_sync(lambda: "serving")) == 2
        assert cluster._process is not None
        kill_pid(cluster._process.pid)  # no stop: the ranks watch the controller
        assert all_gone(ranks | {mpiexec}) == []


def test_an_mpiexec_that_fails_ends_the_start_with_what_it_printed() -> None:
    cluster = Cluster(n=2, engines="mpi", mpi_args=["--no-such-mpiexec-option"])
    started = time.monotonic()
    with cleaned_up(cluster), pytest.raises(ClusterUnavailable) as caught:
        cluster.start_and_connect_sync(timeout=90)
    assert time.monotonic() - started < 45
    message = str(caught.value)
    assert "0 of 2 engines registered (none is up): the launcher failed" in message
    assert "the mpi launcher: mpiexec (pid" in message
    assert "no-such-mpiexec-option" in message  # what mpiexec printed


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"mpi_args": "-n 2"}, "mpi_args must be a list of strings"),
        ({"env": {"A": 1}}, "env must map names to strings"),
        ({"python": "python3"}, "python must be an absolute path"),
    ],
)
def test_bad_mpi_options_are_one_line(options: dict[str, object], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        Cluster(n=1, engines="mpi", **options)


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def test_loom_cluster_start_with_mpi_engines_then_list_and_stop(tmp_path: Path) -> None:
    def loom(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-P", "-m", "shell", *args],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    pids: set[int] = set()
    try:
        started = loom("cluster", "start", "-n", "2", "--engines", "mpi", "-o", 'mpi_args=["-v"]')
        assert started.returncode == 0, started.stderr
        assert "Cluster started with 2 engines" in started.stdout
        [path] = (tmp_path / "runtime").glob("loom-cluster-*.json")
        pids.add(json.loads(path.read_text())["pid"])
        listed = loom("cluster", "list")
        engines = [int(pid) for pid in re.findall(r"engine \d+  pid (\d+)", listed.stdout)]
        assert len(engines) == 2
        pids |= set(engines) | {_parent(pid) for pid in engines}  # and mpiexec
        stopped = loom("cluster", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert all_gone(pids) == []
    finally:
        for pid in pids:
            kill_pid(pid)
