"""Engines with labels and resources, in a real cluster: one engine from ``Cluster(labels=,
resources=)`` and two more started as a user would, ``loom engine --label ... --resources
...``; every process is killed by PID after."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cluster_support import _kill
from _launch_fixtures import cleaned_up, isolate_launch, slurm, ssh_hosts

import parallel as ipp
from parallel import NoEnginesRegistered, RemoteError

pytestmark = pytest.mark.timeout(180)

TIMEOUT = 60.0
GIB = float(1 << 30)


class Pool:
    """The shared cluster: its client, and which engine id carries what."""

    def __init__(self, cluster: ipp.Cluster, rc: ipp.Client, runtime: Path) -> None:
        self.cluster, self.rc, self.runtime = cluster, rc, runtime
        info = rc.engines_info()
        by_labels = {tuple(entry["labels"]): engine for engine, entry in info.items()}
        self.base = by_labels[("base",)]
        self.gpu1 = by_labels[("bigmem",)]
        self.gpu2 = by_labels[("bigmem", "x")]


def _loom(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shell", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    tmp = tmp_path_factory.mktemp("traits")
    runtime = tmp / "runtime"
    pids: set[int] = set()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
        patch.setenv("LOOM_HISTORY_FILE", str(tmp / "history.sqlite"))
        cluster = ipp.Cluster(n=1, labels=["base"], resources={"slots": 2}, restart_engines=False)
        extra: list[subprocess.Popen[bytes]] = []
        try:
            rc = cluster.start_and_connect_sync(timeout=TIMEOUT)
            assert cluster._process is not None
            pids.add(cluster._process.pid)
            for traits in (
                ["--label", "bigmem", "--resources", "gpu=1,mem=64G"],
                ["--label", "bigmem", "--label", "x", "--resources", "gpu=2"],
            ):
                argv = [sys.executable, "-m", "shell", "engine", "-f", str(cluster.cluster_file)]
                process = subprocess.Popen(
                    [*argv, *traits], stdin=subprocess.DEVNULL, start_new_session=True
                )
                extra.append(process)
                pids.add(process.pid)
            rc.wait_for_engines(3, timeout=TIMEOUT)
            pids |= {record.pid for record in rc._records.values()}
            yield Pool(cluster, rc, runtime)
        finally:
            cluster.stop_cluster_sync()
            for pid in pids:
                _kill(pid)
            for process in extra:
                process.wait(timeout=TIMEOUT)


def test_engines_info_and_cluster_list_show_labels_and_resources(pool: Pool) -> None:
    info = pool.rc.engines_info()
    assert info[pool.base]["labels"] == ["base"]
    assert info[pool.base]["resources"] == {"slots": 2.0}
    assert info[pool.gpu1]["resources"] == {"gpu": 1.0, "mem": 64 * GIB}
    assert info[pool.gpu2]["labels"] == ["bigmem", "x"]
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(pool.runtime)}
    listed = _loom("cluster", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[1]: line for line in listed.stdout.splitlines() if "engine " in line}
    assert lines[str(pool.base)].endswith("running  labels base  resources slots=2")
    assert "labels bigmem  resources gpu=1,mem=64G" in lines[str(pool.gpu1)]
    assert "labels bigmem,x  resources gpu=2" in lines[str(pool.gpu2)]


def test_a_labelled_view_runs_only_on_engines_with_every_label(pool: Pool) -> None:
    info = pool.rc.engines_info()
    view = pool.rc.load_balanced_view(labels=["bigmem"])
    pids = set(view.map_sync(lambda _: __import__("os").getpid(), range(8)))
    assert pids <= {info[pool.gpu1]["pid"], info[pool.gpu2]["pid"]}
    with view.temp_flags(labels="bigmem,x"):
        assert view.apply_sync(os.getpid) == info[pool.gpu2]["pid"]
    assert (
        pool.rc.load_balanced_view().apply_sync(os.getpid, labels=["base"])
        == (info[pool.base]["pid"])
    )


def test_resources_are_held_while_a_task_is_on_its_engine(pool: Pool, tmp_path: Path) -> None:
    # Four gpu=1 tasks that wait for a file: the gpu=1 engine holds one, the gpu=2 engine
    # two (its hwm), and the fourth waits in the client until a holder answers.
    release = tmp_path / "release"

    def hold(path: str) -> int:
        import os
        import time

        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return os.getpid()

    view = pool.rc.load_balanced_view()
    results = [view.apply_async(hold, str(release), resources={"gpu": 1}) for _ in range(4)]
    state = pool.rc.balancer.state
    held = {pool.gpu1: state.load(pool.gpu1), pool.gpu2: state.load(pool.gpu2)}
    assert held == {pool.gpu1: 1, pool.gpu2: 2}
    assert state.load(pool.base) == 0
    release.touch()
    info = pool.rc.engines_info()
    pids = [result.get(timeout=TIMEOUT) for result in results]
    assert set(pids) <= {info[pool.gpu1]["pid"], info[pool.gpu2]["pid"]}
    amounts = view.map_sync(lambda _: __import__("os").getpid(), range(4), resources={"gpu": 2})
    assert set(amounts) == {info[pool.gpu2]["pid"]}
    assert view.apply_sync(os.getpid, resources={"mem": "32G"}) == info[pool.gpu1]["pid"]


def test_a_task_no_engine_can_hold_fails_at_once_saying_what_was_asked_and_exists(
    pool: Pool,
) -> None:
    view = pool.rc.load_balanced_view()
    started = time.monotonic()
    with pytest.raises(RemoteError) as caught:
        view.apply_sync(os.getpid, resources={"gpu": 4})
    assert time.monotonic() - started < 10
    assert caught.value.ename == "TaskUnsatisfiable"
    message = str(caught.value)
    assert "no live engine has resources gpu=4" in message
    assert "labels ['bigmem'], resources gpu=1,mem=64G" in message
    assert "labels ['base'], resources slots=2" in message
    unknown = pool.rc.load_balanced_view(labels=["tpu"])
    with pytest.raises(RemoteError, match=r"no live engine has labels \['tpu'\]"):
        unknown.map_sync(lambda x: x, range(3))


def test_select_gives_a_direct_view_of_the_matching_engines(pool: Pool) -> None:
    view = pool.rc.select(label="bigmem")
    assert view.targets == sorted([pool.gpu1, pool.gpu2])
    assert view.apply_sync(lambda: "here") == ["here", "here"]
    assert pool.rc.select(resources={"gpu": 2}).targets == [pool.gpu2]
    assert pool.rc.select(labels=["bigmem", "x"]).targets == [pool.gpu2]
    with pytest.raises(NoEnginesRegistered, match=r"no live engine has labels \['tpu'\] \("):
        pool.rc.select(label="tpu")


def test_bad_labels_and_resources_are_one_line_errors(pool: Pool) -> None:
    view = pool.rc.load_balanced_view()
    bad: list[dict[str, Any]] = [
        {"resources": {"gpu": -1}},
        {"resources": "gpu=lots"},
        {"resources": {"gpu": True}},
        {"labels": ["has space"]},
        {"labels": 3},
    ]
    for flags in bad:
        with pytest.raises(ValueError, match=r"^(resource|label)") as caught:
            view.set_flags(**flags)
        assert "\n" not in str(caught.value), flags
    assert view.resources == {}
    with pytest.raises(ValueError, match="resource mem: '64Q' is not an amount"):
        ipp.Cluster(n=1, resources="mem=64Q")
    assert pool.cluster.cluster_file is not None
    engine = _loom("engine", "-f", str(pool.cluster.cluster_file), "--resources", "gpu")
    assert engine.returncode == 2
    assert (
        engine.stderr == "loom engine: resources: 'gpu' is not NAME=AMOUNT (e.g. gpu=1,mem=64G)\n"
    )


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="needs Open MPI's mpiexec")
def test_mpi_ranks_carry_the_labels_and_resources_of_cluster(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Cluster(labels=, resources=) goes to the engines in their environment; the mpi
    # launcher passes it to every rank (-x for ranks on other nodes).
    pytest.importorskip("mpi4py")
    isolate_launch(monkeypatch, tmp_path)
    cluster = ipp.Cluster(n=2, engines="mpi", labels="mpi,rank", resources={"gpu": "1"})
    with cleaned_up(cluster) as pids:
        rc = cluster.start_and_connect_sync(timeout=90)
        pids |= {record.pid for record in rc._records.values()}
        info = rc.engines_info()
        assert [(e["labels"], e["resources"]) for e in info.values()] == [
            (["mpi", "rank"], {"gpu": 1.0})
        ] * 2
        view = rc.load_balanced_view(labels=["mpi"], resources={"gpu": 1})
        ranks = view.map_sync(lambda _: __import__("mpi4py").MPI.COMM_WORLD.rank, range(4))
        assert set(ranks) <= {0, 1}
        assert rc.select(label="rank").targets == [0, 1]


def ssh_traits_scenario(spec: str) -> None:
    """Run in the controller's namespace (``python -c``) by the test below: an ssh
    cluster as ``spec`` (JSON) says; what each engine carries, by its address, as one JSON
    line on stdout. Failures are reported, not raised."""
    options = json.loads(spec)
    cluster = ipp.Cluster(engines="ssh", **options)
    report: dict[str, object] = {}
    try:
        rc = cluster.start_and_connect_sync(timeout=60)
        info = rc.engines_info()
        report["traits"] = {e["address"]: [e["labels"], e["resources"]] for e in info.values()}
        view = rc.load_balanced_view(labels=["gpu"], resources={"gpu": 1})
        address = {e["pid"]: e["address"] for e in info.values()}
        pids = view.map_async(lambda _: __import__("os").getpid(), range(4)).get(timeout=30)
        report["gpu_ran_on"] = sorted({address[pid] for pid in pids})
    except (ipp.ClusterUnavailable, TimeoutError, ipp.RemoteError) as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        cluster.stop_cluster_sync()
    print(json.dumps(report), flush=True)


def test_ssh_hosts_carry_the_clusters_labels_and_resources_plus_their_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_launch(monkeypatch, tmp_path)
    (tmp_path / "ssh").mkdir()
    with ssh_hosts(tmp_path / "ssh") as hosts:
        (_, b_ip), (_, c_ip) = hosts.hosts.items()
        spec = {
            "hosts": {b_ip: 1, c_ip: 1},
            "ssh_args": hosts.ssh_args,
            "labels": ["site"],
            "resources": {"mem": "16G"},
            "host_labels": {c_ip: ["gpu"]},
            "host_resources": {c_ip: "gpu=1,mem=64G"},
        }
        report = hosts.scenario("test_engine_traits.ssh_traits_scenario", spec, timeout=120)
    assert "error" not in report, report["error"]
    assert report["traits"] == {
        b_ip: [["site"], {"mem": 16 * GIB}],
        c_ip: [["gpu", "site"], {"gpu": 1.0, "mem": 64 * GIB}],
    }
    assert report["gpu_ran_on"] == [c_ip]


def test_slurm_job_tasks_carry_the_labels_and_resources_of_cluster(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # sbatch hands the job the submitting environment (Slurm's default --export=ALL), and
    # srun its tasks: the engines of the job read LOOM_ENGINE_LABELS/_RESOURCES there.
    isolate_launch(monkeypatch, tmp_path)
    (tmp_path / "slurm").mkdir()
    with slurm(tmp_path / "slurm") as conf:
        monkeypatch.setenv("SLURM_CONF", str(conf))
        cluster = ipp.Cluster(n=2, engines="slurm", labels=["slurm"], resources="gpu=1")
        with cleaned_up(cluster) as pids:
            rc = cluster.start_and_connect_sync(timeout=90)
            pids |= {record.pid for record in rc._records.values()}
            info = rc.engines_info()
            assert [(e["labels"], e["resources"]) for e in info.values()] == [
                (["slurm"], {"gpu": 1.0})
            ] * 2
            cluster.stop_cluster_sync()
