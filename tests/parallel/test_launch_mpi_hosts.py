"""The ``mpi`` launcher across hosts: one ``mpiexec`` whose ranks run on two other
"hosts" (network namespaces with hostnames of their own, sshd in each), started there by
Open MPI through ``ssh`` (its ``plm_rsh_agent``), talking MPI to each other over TCP
through the controller's namespace, and to a controller bound off loopback (CurveZMQ).

The fixture blackholes 10.9.0.0/16 in the root namespace before it makes any namespace;
the cluster and its client run in the controller's namespace (``mpi_hosts_scenario`` in
a ``python -c``), so those addresses are used only inside the namespaces."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _launch_fixtures import Hosts, all_gone, isolate_launch, ssh_hosts

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    with ssh_hosts(tmp_path_factory.mktemp("mpi-hosts"), routed=True) as made:
        yield made


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_launch(monkeypatch, tmp_path)


def _scenario(net: Hosts, /, **spec: object) -> dict[str, Any]:
    """``mpi_hosts_scenario(spec)`` in the controller's namespace; its report. Open MPI
    starts its daemon on the hosts with the test's ssh (its keys and port)."""
    spec["mpi_args"] = ["--mca", "plm_rsh_agent", f"ssh {' '.join(net.ssh_args)}"]
    return net.scenario("_launch_fixtures.mpi_hosts_scenario", spec, timeout=200)


def test_ranks_on_two_hosts_reach_a_curve_controller_and_run_a_collective(
    hosts: Hosts, tmp_path: Path
) -> None:
    (b, b_ip), (c, c_ip) = hosts.hosts.items()
    remote = tmp_path / "remote-runtime"  # the hosts' runtime directory, not the controller's
    remote.mkdir(mode=0o700)
    report = _scenario(
        hosts,
        ip="10.9.0.1",  # the controller's address facing B; C reaches it through a route
        hosts={b_ip: 2, c_ip: 2},  # n defaults to their sum
        # Ranks on other nodes get only what -x names: the env option is forwarded.
        env={
            "LOOM_TEST_FORWARDED": "yes",
            "PYTHONDONTWRITEBYTECODE": "1",
            "JUPYTER_RUNTIME_DIR": str(remote),
        },
    )
    assert "error" not in report, report["error"]
    assert report["ids"] == [0, 1, 2, 3]
    assert report["curve"] is True  # bound off loopback: CurveZMQ by default
    assert report["secrets_seen_in"] == []  # mpiexec, orted, ranks: the file's path only
    # Engine i is rank i; ranks 0-1 on B, 2-3 on C (--host B:2,C:2), each in its host's
    # network namespace, with its host's name, bound to its host's address.
    namespaces = {os.stat(f"/run/netns/{name}").st_ino: name for name in (b, c)}
    ranks = report["ranks"]
    assert [(rank, name) for rank, name, _, _ in ranks] == [(0, b), (1, b), (2, c), (3, c)]
    assert [namespaces[inode] for _, _, _, inode in ranks] == [b, b, c, c]
    assert report["addresses"] == {"0": b_ip, "1": b_ip, "2": c_ip, "3": c_ip}
    # An MPI collective across the hosts: every rank sees every rank and both hostnames.
    everyone = [[0, b], [1, b], [2, c], [3, c]]
    assert report["collective"] == [[6, everyone]] * 4
    assert report["environ"] == ["yes"] * 4
    # Stopped: the ranks are gone (waited for: the stop returns once mpiexec has, and a
    # rank may still be cleaning up then), and nothing but sshd runs on the hosts (Open
    # MPI's daemons included).
    assert all_gone({pid for _, _, pid, _ in ranks}) == []
    # The ranks' connection files (the cluster's keys) were there while they ran; stopped
    # by SIGTERM (mpiexec's), each removed its own: the controller cleans only its runtime
    # directory, and a node's may not be that one.
    assert report["connection_files"] == 4
    assert list(remote.iterdir()) == []
    for name in (b, c):
        assert all_gone(hosts.pids_in(name) - {hosts.sshd_pids[name]}) == []


def test_a_controller_on_loopback_is_named_at_once_by_ranks_on_other_hosts(hosts: Hosts) -> None:
    # The default ip (127.0.0.1) serves only the controller's host: each rank elsewhere
    # says so and exits, and the start ends then, not at its timeout.
    (_, b_ip), (_, c_ip) = hosts.hosts.items()
    report = _scenario(hosts, hosts={b_ip: 1, c_ip: 1}, timeout=90)
    assert "the controller is bound to 127.0.0.1, its host's loopback" in report["error"]
    assert "the launcher failed" in report["error"]
    assert report["failed_after"] < 60
    for name in hosts.hosts:
        assert all_gone(hosts.pids_in(name) - {hosts.sshd_pids[name]}) == []
