"""The ``ssh`` launcher against real sshd in network namespaces: the controller in one
namespace bound to its loopback (reachable only through the SSH tunnel), engines on two
other "hosts" with their own addresses, and nothing left on them after stop.

The module's fixture blackholes 10.9.0.0/16 in the root namespace before it makes any
namespace; every use of those addresses happens inside the namespaces (the cluster and
its client run in the controller's namespace, in a ``python -c`` of ``ssh_scenario``)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _launch_fixtures import Hosts, all_gone, isolate_launch, ssh_hosts

from parallel import Cluster

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    with ssh_hosts(tmp_path_factory.mktemp("ssh")) as made:
        yield made


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_launch(monkeypatch, tmp_path)


def _scenario(net: Hosts, scenario: str = "ssh_scenario", **spec: object) -> dict[str, object]:
    return net.scenario(f"_launch_fixtures.{scenario}", spec, timeout=150)


def test_engines_run_on_other_hosts_and_reach_the_controller_only_through_ssh(
    hosts: Hosts, tmp_path: Path
) -> None:
    (b, b_ip), (c, c_ip) = hosts.hosts.items()
    remote = tmp_path / "remote-runtime"  # the hosts' runtime directory (env reaches them)
    env = {"JUPYTER_RUNTIME_DIR": str(remote)}
    report = _scenario(hosts, hosts={b_ip: 2, c_ip: 1}, ssh_args=hosts.ssh_args, env=env)
    assert "error" not in report, report["error"]
    assert report["connection_files"] == 3
    assert list(remote.iterdir()) == []  # the agents removed them (they hold the key)
    assert report["ids"] == [0, 1, 2]  # n defaults to the hosts' counts
    assert report["sum"] == 3
    assert report["key_seen_in"] == []  # the keys went over ssh's stdin: in no argv, no env
    assert report["curve"] is True  # the engines bind their hosts' addresses: CurveZMQ
    # The controller listens on its own namespace's loopback: B and C reach it only
    # through the tunnels ssh -R made.
    assert str(report["hub"]).startswith("tcp://127.0.0.1:")
    addresses = report["addresses"]
    assert isinstance(addresses, dict)
    assert sorted(addresses.values()) == [b_ip, b_ip, c_ip]
    namespaces = {os.stat(f"/run/netns/{name}").st_ino: name for name in (b, c)}
    engines = report["engines"]
    assert isinstance(engines, list)
    assert sorted(namespaces[inode] for _, inode in engines) == [b, b, c]
    # Stopped: every engine is gone, and nothing but sshd itself runs on the hosts.
    assert all_gone({pid for pid, _ in engines}) == []
    for name in (b, c):
        assert all_gone(hosts.pids_in(name) - {hosts.sshd_pids[name]}) == []


def test_a_controller_killed_with_sigkill_leaves_nothing_on_the_hosts(
    hosts: Hosts, tmp_path: Path
) -> None:
    (b, b_ip), (c, c_ip) = hosts.hosts.items()
    remote = tmp_path / "remote-runtime"
    env = {"JUPYTER_RUNTIME_DIR": str(remote)}
    report = _scenario(
        hosts, hosts={b_ip: 1, c_ip: 1}, ssh_args=hosts.ssh_args, env=env, kill_controller=True
    )
    assert "error" not in report, report["error"]
    engines = report["engines"]
    assert isinstance(engines, list)
    assert len(engines) == 2
    # Its ssh processes' stdin closed with it: each agent stopped its engines and left.
    assert all_gone({pid for pid, _ in engines}) == []
    for name in (b, c):
        assert all_gone(hosts.pids_in(name) - {hosts.sshd_pids[name]}) == []
    assert list(remote.iterdir()) == []


def test_an_engine_killed_on_its_host_comes_back_there_with_its_id_and_setup(
    hosts: Hosts,
) -> None:
    # The agent reports the exit (it is the engine's parent: "killed by signal 9") on
    # ssh's stdout, and forks the replacement when the launcher writes "fork UUID".
    (b, b_ip), (c, c_ip) = hosts.hosts.items()
    code = "import sys, _ssh_healing_scenario as s; s.run(sys.argv[1])"
    options = {"hosts": {b_ip: 1, c_ip: 1}, "ssh_args": hosts.ssh_args, "restart_limit": "2/60"}
    spec = json.dumps(options)
    done = hosts.run_in_controller(
        [sys.executable, "-P", "-c", code, spec], env=dict(os.environ), timeout=150
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in report, report["error"]
    assert report["back"], report
    assert report["restarts"] == [1, "killed by signal 9 (SIGKILL)"]
    (old_pid, old_ns), (new_pid, new_ns) = report["old"], report["new"]
    assert new_pid != old_pid
    assert new_ns == old_ns  # on its own host again
    assert old_ns in {os.stat(f"/run/netns/{name}").st_ino for name in (b, c)}
    assert report["marker"] == 42  # the recorded setup ran on the replacement
    # Killed again: given up (the limit is 2 deaths), quoting what it wrote on its host.
    given_up = report["given_up"]
    assert "engine 0 died: killed by signal 9 (SIGKILL); not restarted: it died 2 times" in given_up
    assert "its last output:\nlast words on the host" in given_up
    assert all_gone({old_pid, new_pid} | {pid for pid, _ in report["engines"]}) == []
    for name in (b, c):
        assert all_gone(hosts.pids_in(name) - {hosts.sshd_pids[name]}) == []


def test_an_unreachable_host_ends_the_start_with_what_ssh_printed(hosts: Hosts) -> None:
    (_, b_ip), _ = hosts.hosts.items()
    report = _scenario(hosts, hosts={b_ip: 1}, ssh_args=[*hosts.ssh_args, "-p", "2999"])
    error = str(report["error"])
    assert "0 of 1 engines registered (none is up): the launcher failed" in error
    assert f"the ssh launcher: ssh to {b_ip} (pid " in error
    assert "exited with code 255" in error
    assert "Connection refused" in error


def test_an_engine_on_another_node_binds_that_nodes_address(hosts: Hosts) -> None:
    # What mpi and slurm run on each node: the engine there cannot bind the controller's
    # address, so it binds the one its node reaches the controller with.
    (b, b_ip), _ = hosts.hosts.items()
    report = _scenario(hosts, "node_engine_scenario", ip="10.9.0.1", node=b)
    assert "error" not in report, report["error"]
    assert report["address"] == b_ip
    assert report["curve"] is True  # off loopback: the node's engine serves CurveZMQ
    assert report["secrets_seen_in"] == []  # it was given the file's path, no key
    engine = report["engine"]
    assert isinstance(engine, list)
    assert engine[1] == os.stat(f"/run/netns/{b}").st_ino
    assert all_gone({engine[0]}) == []


def test_one_unreachable_host_of_two_fails_the_start_and_leaves_nothing_on_the_other(
    hosts: Hosts,
) -> None:
    (b, b_ip), _ = hosts.hosts.items()
    # 10.9.0.1 is the controller's own namespace, where no sshd listens.
    report = _scenario(hosts, hosts={b_ip: 1, "10.9.0.1": 1}, ssh_args=hosts.ssh_args)
    error = str(report["error"])
    assert "of 2 engines registered" in error
    assert "the launcher failed" in error
    assert "ssh to 10.9.0.1 (pid " in error
    assert "Connection refused" in error
    assert all_gone(hosts.pids_in(b) - {hosts.sshd_pids[b]}) == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"hosts": {}}, "hosts is empty"),
        ({"hosts": {"-oProxyCommand=x": 1}}, "is not a host name"),
        ({"hosts": {"node1": 0}}, "needs a positive engine count"),
        ({"hosts": "node1"}, "hosts must map host names to engine counts"),
        ({"hosts": {"node1": 1}, "python": "python3"}, "python must be an absolute path"),
    ],
)
def test_bad_ssh_options_are_one_line(options: dict[str, object], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        Cluster(engines="ssh", **options)


def test_more_engines_than_the_hosts_hold_is_refused_at_start() -> None:
    cluster = Cluster(n=3, engines="ssh", hosts={"node1": 2})
    from parallel import ClusterUnavailable

    with pytest.raises(ClusterUnavailable, match="3 engines asked, but hosts has room for 2"):
        cluster.start_and_connect_sync(timeout=60)
