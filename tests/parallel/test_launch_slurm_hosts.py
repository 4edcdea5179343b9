"""The ``slurm`` launcher on a Slurm of two nodes: slurmctld in the controller's network
namespace, one slurmd on each of two other "hosts" (namespaces with their own names and
addresses, routed through the controller's), so one ``sbatch`` job spans both nodes and
its ``srun`` step puts engines on each, reaching a controller bound off loopback
(CurveZMQ).

The fixture blackholes 10.9.0.0/16 in the root namespace before it makes any namespace;
the cluster, its client and Slurm's commands run in the controller's namespace
(``slurm_hosts_scenario`` in a ``python -c``)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _launch_fixtures import (
    Hosts,
    all_gone,
    isolate_launch,
    kill_pid,
    secrets_exposed,
    slurm,
    ssh_hosts,
)

from parallel import Cluster, ClusterUnavailable

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hosts, Path]]:
    directory = tmp_path_factory.mktemp("slurm-hosts")
    (directory / "net").mkdir()
    with (
        ssh_hosts(directory / "net", routed=True) as net,
        slurm(directory / "slurm", net=net) as conf,
    ):
        yield net, conf


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_launch(monkeypatch, tmp_path)


def slurm_hosts_scenario(spec: str) -> None:
    """Run in the controller's namespace: a ``slurm`` cluster as ``spec`` says; what its
    engines see, then how the job ended, as one JSON line on stdout."""
    options = json.loads(spec)
    kill_controller = options.pop("kill_controller", False)
    cluster = Cluster(engines="slurm", **options)
    report: dict[str, object] = {}
    try:
        rc = cluster.start_and_connect_sync(timeout=90)
        status = cluster.launcher_status
        assert status is not None
        report["job"] = status.summary.split()[2]  # "slurm job 17 is RUNNING"
        report["ids"] = rc.ids
        report["curve"] = rc.info.curve is not None
        report["addresses"] = [rc._records[i].address for i in rc.ids]
        report["engines"] = rc[:].apply_sync(
            lambda: (
                __import__("os").environ["SLURMD_NODENAME"],
                __import__("socket").gethostname(),
                __import__("os").stat("/proc/self/ns/net").st_ino,
                __import__("os").environ["SLURM_STEP_ID"],
                __import__("os").getpid(),
            )
        )
        report["secrets_seen_in"] = secrets_exposed(rc.info)
        if kill_controller:  # no stop, no scancel: the engines must end by themselves
            assert cluster._process is not None
            kill_pid(cluster._process.pid)
    except ClusterUnavailable as exc:
        report["error"] = str(exc)
    finally:
        cluster.stop_cluster_sync()
    if "job" in report and not kill_controller:
        shown = subprocess.run(
            ["scontrol", "-o", "show", "job", str(report["job"])],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout  # fmt: skip
        report["job_state"] = shown.split("JobState=", 1)[-1].split()[0] if shown else "gone"
    print(json.dumps(report), flush=True)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _scenario(
    nodes: tuple[Hosts, Path], env: dict[str, str] | None = None, **spec: object
) -> dict[str, Any]:
    net, conf = nodes
    env = {**os.environ, "SLURM_CONF": str(conf), **(env or {})}
    return net.scenario("test_launch_slurm_hosts.slurm_hosts_scenario", spec, timeout=200, env=env)


def test_one_job_puts_engines_on_two_nodes_reaching_a_curve_controller(
    nodes: tuple[Hosts, Path],
) -> None:
    net, _ = nodes
    (b, b_ip), (c, c_ip) = net.hosts.items()
    report = _scenario(nodes, n=4, ip="10.9.0.1")  # 2 CPUs a node: 4 tasks take both
    assert "error" not in report, report["error"]
    assert report["ids"] == [0, 1, 2, 3]
    assert report["curve"] is True  # bound off loopback: CurveZMQ by default
    assert report["secrets_seen_in"] == []  # sbatch, srun, the tasks: the file's path only
    # Two engines on each node, each one task of the job's srun step, in its node's
    # namespace, with its node's name, bound to its node's address.
    namespaces = {os.stat(f"/run/netns/{name}").st_ino: name for name in (b, c)}
    engines = report["engines"]
    seen = sorted((node, host, namespaces[inode], step) for node, host, inode, step, _ in engines)
    assert seen == [(b, b, b, "0")] * 2 + [(c, c, c, "0")] * 2
    address_of = {b: b_ip, c: c_ip}
    assert report["addresses"] == [address_of[node] for node, *_ in engines]
    # Stopped: the job was cancelled, its engines are gone, and on the nodes only the
    # daemons remain (slurmd, and the fixture's sshd).
    assert report["job_state"] in ("CANCELLED", "COMPLETED")
    assert all_gone({pid for *_, pid in engines}) == []
    for name in (b, c):
        left = net.pids_in(name) - {net.sshd_pids[name]}
        assert all_gone({pid for pid in left if _comm(pid) != "slurmd"}) == []


def test_engines_on_other_nodes_end_after_the_grace_when_the_controller_is_killed(
    nodes: tuple[Hosts, Path],
) -> None:
    # Killed with SIGKILL, the controller cancels nothing; the engines on the nodes wait
    # LOOM_CONTROLLER_GRACE for it (a restored controller would get them back), then
    # exit, and the job ends with them. The job's environment is the submitter's.
    net, _ = nodes
    report = _scenario(
        nodes, env={"LOOM_CONTROLLER_GRACE": "3"}, n=4, ip="10.9.0.1", kill_controller=True
    )
    assert "error" not in report, report["error"]
    assert all_gone({pid for *_, pid in report["engines"]}, timeout=60) == []
    for name in net.hosts:
        left = net.pids_in(name) - {net.sshd_pids[name]}
        assert all_gone({pid for pid in left if _comm(pid) != "slurmd"}, timeout=60) == []
    shown = net.run_in_controller(
        ["scontrol", "-o", "show", "job", str(report["job"])],
        env={**os.environ, "SLURM_CONF": str(nodes[1])},
        timeout=30,
    ).stdout
    assert "JobState=RUNNING" not in shown, shown
    assert "JobState=PENDING" not in shown, shown
