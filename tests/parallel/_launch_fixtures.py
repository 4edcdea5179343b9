"""Launchers and helpers for the launcher tests.

``ScriptLauncher`` is a user-defined launcher as docs/parallel.md shows one: a
``parallel.launchers`` subclass named ``"_launch_fixtures:ScriptLauncher"`` (the
controller imports it; ``tests/parallel`` is put on its ``PYTHONPATH``). Its ``script``
runs under ``sh -c`` with ``$ENGINE`` (the command that starts one engine) and ``$N``,
so a test can make a launcher that fails, hangs or starts only some engines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _cluster_support import isolate

from kernel.client import wait_pid_exit
from parallel import Cluster, ClusterUnavailable
from parallel.launchers import CommandLauncher, LaunchContext, LaunchError, engine_argv
from parallel.launchers._launched_process import tail_of
from parallel.protocol._controller_info import ControllerInfo


class ScriptLauncher(CommandLauncher):
    name = "script"

    def __init__(self, script: str) -> None:
        super().__init__()
        if not isinstance(script, str) or not script.strip():
            raise LaunchError("script must be a non-empty shell command")
        self.script = script

    def command(self, n: int, ctx: LaunchContext) -> tuple[list[str], Mapping[str, str]]:
        env = {**os.environ, "ENGINE": shlex.join(engine_argv(ctx)), "N": str(n)}
        return ["/bin/sh", "-c", self.script], env


class EarlyScriptLauncher(ScriptLauncher):
    """A ``ScriptLauncher`` the controller starts before it writes the cluster file
    (``starts_before_controller``, as ``mpi`` and ``slurm``); ``$FILE_EXISTED`` says
    whether the file existed when the controller called :meth:`command` ("yes"/"no")."""

    name = "early-script"
    starts_before_controller = True

    def command(self, n: int, ctx: LaunchContext) -> tuple[list[str], Mapping[str, str]]:
        argv, env = super().command(n, ctx)
        existed = "yes" if ctx.cluster_file.exists() else "no"
        return argv, {**env, "FILE_EXISTED": existed}


TESTS = Path(__file__).resolve().parent


def isolate_launch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As ``isolate``, and the controller can import this module (``ScriptLauncher``)."""
    isolate(monkeypatch, tmp_path)
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{path}" if path else str(TESTS))


def kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def launcher_pid(cluster: Cluster) -> int | None:
    """The launcher command's pid, from its status ("mpiexec pid 123")."""
    status = cluster.launcher_status
    found = re.search(r"\bpid (\d+)", status.summary) if status is not None else None
    return int(found.group(1)) if found else None


@contextlib.contextmanager
def cleaned_up(cluster: Cluster) -> Iterator[set[int]]:
    """Yields a set for pids the test learns; afterwards the cluster is stopped the
    graceful way, then the controller, the launcher and those pids are SIGKILLed."""
    pids: set[int] = set()
    try:
        yield pids
    finally:
        if cluster._process is not None:
            pids.add(cluster._process.pid)
            found = launcher_pid(cluster)
            if found:
                pids.add(found)
        if cluster._client is not None:
            pids |= {record.pid for record in cluster._client._records.values()}
        cluster.stop_cluster_sync()
        for pid in pids:
            kill_pid(pid)


def all_gone(pids: set[int], timeout: float = 20.0) -> list[int]:
    """The pids still running after ``timeout`` seconds (each waited for by pidfd)."""
    deadline = time.monotonic() + timeout
    return [pid for pid in pids if not wait_pid_exit(pid, max(0.0, deadline - time.monotonic()))]


# -- a one-node Slurm, started by pid and stopped after (../shared/CLUSTER-TESTBED.md) ----

SLURM_CONF = """\
ClusterName=loomtest
SlurmctldHost={host}({ctld_addr})
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool{per_node}
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd{per_node}.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd{per_node}.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
MailProg=/bin/true
SlurmdParameters=config_overrides
{nodes}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
PartitionName=closed Nodes=ALL MaxTime=INFINITE State=DOWN
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ssh_keys(folder: Path) -> None:
    """Make ``folder`` (0700) with an sshd host key ``host``, a client key ``client`` and
    ``authorized_keys`` admitting that client."""
    folder.mkdir(mode=0o700)
    for key in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)],
            check=True, timeout=30,
        )  # fmt: skip
    (folder / "authorized_keys").write_bytes((folder / "client.pub").read_bytes())


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (CI runs these as root)")


@contextlib.contextmanager
def slurm(directory: Path, timeout: float = 60.0, *, net: Hosts | None = None) -> Iterator[Path]:
    """slurmctld and slurmd for one node (this host), with ``auth/none``; yields the
    ``slurm.conf`` path (set ``SLURM_CONF`` to it). Every job is cancelled and the
    daemons are stopped by pid afterwards.

    ``net`` (``ssh_hosts(routed=True)``): a Slurm of several nodes instead, slurmctld in
    the controller's namespace (at 10.9.0.1) and one slurmd on each host, named as the
    host (2 CPUs each); Slurm's commands then work only from the controller's namespace
    (``net.run_in_controller``), since 10.9.x is blackholed everywhere else."""
    need_root("a test Slurm (slurmctld, slurmd)")
    if net is None:
        nodes = {socket.gethostname(): "127.0.0.1"}
        node_cpus, ctld_addr, per_node = 8, "127.0.0.1", ""
    else:
        nodes, node_cpus, ctld_addr, per_node = net.hosts, 2, "10.9.0.1", "-%n"
    (directory / "state").mkdir(parents=True)
    for node in nodes:
        (directory / ("spool" + per_node.replace("%n", node))).mkdir()
    conf = directory / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            host=socket.gethostname(),
            ctld_addr=ctld_addr,
            ctld_port=free_port(),
            slurmd_port=free_port(),
            dir=directory,
            per_node=per_node,
            nodes="\n".join(
                f"NodeName={node} NodeAddr={address} CPUs={node_cpus}"
                for node, address in nodes.items()
            ),
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    # In the controller's namespace (with net), where 10.9.0.1 is.
    here = ["ip", "netns", "exec", net.controller] if net is not None else []
    commands = {"slurmctld": [*here, "/usr/sbin/slurmctld", "-D", "-c", "-i", "-f", str(conf)]}
    if net is None:
        commands["slurmd"] = ["/usr/sbin/slurmd", "-D", "-f", str(conf)]
    else:  # nsenter, not ip netns exec: that remounts /sys, and slurmd needs its cgroups
        for node in nodes:
            name_it = f'hostname {node} && exec "$@"'  # the node's name, in a UTS namespace
            commands[f"slurmd-{node}"] = [
                "nsenter", f"--net=/run/netns/{node}", "unshare", "--uts", "sh", "-c", name_it,
                "-", "/usr/sbin/slurmd", "-D", "-f", str(conf), "-N", node,
            ]  # fmt: skip
    daemons: list[subprocess.Popen[bytes]] = []
    try:
        for name, argv in commands.items():
            log = (directory / f"{name}.out").open("wb")
            with log:
                daemons.append(
                    subprocess.Popen(
                        argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
                )
        deadline = time.monotonic() + timeout
        state = ""
        while state != "idle":  # sinfo is the only way to ask; it answers within ~1 s
            if time.monotonic() > deadline or any(d.poll() is not None for d in daemons):
                logs = "\n".join(tail_of(path) for path in sorted(directory.glob("slurm*.log")))
                pytest.fail(f"Slurm did not come up (node state {state!r}):\n{logs}")
            done = subprocess.run(
                [*here, "sinfo", "-h", "-p", "debug", "-o", "%T"],
                env=env, capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            state = done.stdout.strip()
            if state != "idle":
                time.sleep(0.2)
        yield conf
    finally:
        if daemons and daemons[0].poll() is None:
            subprocess.run(
                [*here, "scancel", "--full", "--partition", "debug"],
                env=env, timeout=30, check=False,
            )  # fmt: skip
        for daemon in reversed(daemons):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGTERM)
        for daemon in daemons:
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                kill_pid(daemon.pid)
                daemon.wait(10)
        # Tasks of a job run under slurmstepd, in sessions of their own: none may remain.
        for pid in slurm_steps(conf):
            kill_pid(pid)


def slurm_steps(conf: Path, *, tasks_only: bool = False) -> list[int]:
    """Processes of this test Slurm (their environment holds ``SLURM_CONF=conf``) other
    than its daemons (slurmctld and its slurmscriptd, slurmd) and this process: the
    slurmstepds and the jobs' tasks, or with ``tasks_only`` the tasks alone."""
    marker = f"SLURM_CONF={conf}\0".encode()
    skip = {"slurmctld", "slurmscriptd", "slurmd", *(["slurmstepd"] if tasks_only else [])}
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            with contextlib.suppress(OSError):
                if proc.joinpath("comm").read_text().strip() in skip:
                    continue
                if marker in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
    return found


# -- "other hosts": sshd in network namespaces (../shared/CLUSTER-TESTBED.md) ------------

#: The namespaces' addresses. The root namespace blackholes this range FIRST, so that no
#: packet for it can ever leave the machine; tests use these addresses only from inside
#: the namespaces.
GUARDED = "10.9.0.0/16"


@dataclass
class Hosts:
    """Namespace ``controller`` (the controller's "host": 10.9.0.1 and 10.9.1.1) joined by
    a veth pair to each of ``hosts`` (namespace name -> address), each running sshd."""

    controller: str
    hosts: dict[str, str]
    ssh_args: list[str]
    sshd_pids: dict[str, int]

    def run_in_controller(
        self, argv: list[str], env: Mapping[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.controller, *argv],
            capture_output=True, text=True, timeout=timeout, check=False, env=env,
        )  # fmt: skip

    def scenario(
        self,
        call: str,
        spec: Mapping[str, object],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """``module.function(json spec)`` run in the controller's namespace by a fresh
        Python; the JSON report it prints last (it fails the test if the run failed)."""
        module, function = call.rsplit(".", 1)
        code = f"import sys, {module} as m; m.{function}(sys.argv[1])"
        done = self.run_in_controller(
            [sys.executable, "-P", "-c", code, json.dumps(spec)],
            env=dict(os.environ) if env is None else env,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stderr
        report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return report

    def pids_in(self, namespace: str) -> set[int]:
        out = subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=True
        ).stdout
        return {int(pid) for pid in out.split()}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def ssh_hosts(
    directory: Path, count: int = 2, timeout: float = 30.0, *, routed: bool = False
) -> Iterator[Hosts]:
    """``count`` hosts running sshd, and the controller's namespace joined to each.

    ``routed``: the hosts are also one network, as a cluster's nodes are: the controller's
    namespace forwards between its veth pairs and each host routes 10.9.0.0/16 through
    it, and each host's sshd (so whatever ssh starts there) runs with a hostname of its
    own, the namespace's name (a UTS namespace): Open MPI tells its nodes apart by name.
    """
    need_root("network namespaces and sshd")
    tag = f"{os.getpid() % 100000}"
    guarded = subprocess.run(
        ["ip", "route", "show", GUARDED], capture_output=True, text=True, check=True
    ).stdout.strip()
    _ip("route", "replace", "blackhole", GUARDED)  # the guard, before any namespace exists
    controller = f"loomA{tag}"
    names = [f"loom{chr(ord('B') + i)}{tag}" for i in range(count)]
    made: list[str] = []
    daemons: list[subprocess.Popen[bytes]] = []
    try:
        for name in (controller, *names):
            _ip("netns", "add", name)
            made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        hosts: dict[str, str] = {}
        for i, name in enumerate(names):
            near, far = f"lv{tag}a{i}", f"lv{tag}b{i}"
            _ip(
                "link", "add", near, "netns", controller, "type", "veth", "peer", far, "netns", name
            )
            _ip("-n", controller, "addr", "add", f"10.9.{i}.1/24", "dev", near)
            _ip("-n", name, "addr", "add", f"10.9.{i}.2/24", "dev", far)
            _ip("-n", controller, "link", "set", near, "up")
            _ip("-n", name, "link", "set", far, "up")
            hosts[name] = f"10.9.{i}.2"
            if routed:  # the other hosts through the controller's namespace (still 10.9.x)
                _ip("-n", name, "route", "add", GUARDED, "via", f"10.9.{i}.1")
        if routed:
            subprocess.run(
                ["ip", "netns", "exec", controller, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
                check=True, capture_output=True, timeout=30,
            )  # fmt: skip
        keys = directory / "keys"
        ssh_keys(keys)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for name, address in hosts.items():
            config = directory / f"sshd-{name}.conf"
            config.write_text(
                f"ListenAddress {address}\nPort 2222\nHostKey {keys / 'host'}\n"
                f"PidFile {directory / name}.pid\nAuthorizedKeysFile {keys / 'authorized_keys'}\n"
                "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
                "PasswordAuthentication no\nAllowStreamLocalForwarding yes\n"
            )
            subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(config)], check=True, timeout=30)
            sshd = ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)]
            if routed:  # its own hostname: a UTS namespace, named, then sshd in it
                sshd = ["unshare", "--uts", "sh", "-c", f'hostname {name} && exec "$@"', "-", *sshd]
            daemon = subprocess.Popen(
                ["ip", "netns", "exec", name, *sshd], stderr=subprocess.PIPE, start_new_session=True
            )
            daemons.append(daemon)
            assert daemon.stderr is not None
            ready, _, _ = select.select([daemon.stderr], [], [], timeout)  # "Server listening"
            line = daemon.stderr.readline().decode(errors="replace") if ready else ""
            if "Server listening" not in line:
                pytest.fail(f"sshd in {name} did not start: {line!r}")
        client = directory / "ssh_config"
        client.write_text(
            f"Host *\n  Port 2222\n  User root\n  IdentityFile {keys / 'client'}\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  BatchMode yes\n"
            "  LogLevel ERROR\n  ConnectTimeout 30\n"
        )
        yield Hosts(
            controller,
            hosts,
            ["-F", str(client)],
            {name: d.pid for name, d in zip(hosts, daemons, strict=True)},
        )
    finally:
        for daemon in daemons:
            kill_pid(daemon.pid)
            daemon.wait(10)
            if daemon.stderr is not None:
                daemon.stderr.close()
        for name in made:
            for pid in subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
            ).stdout.split():
                kill_pid(int(pid))  # anything a failed test left in a "host"
            subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)
        if not guarded:  # ours: take it away (another run's guard stays)
            subprocess.run(["ip", "route", "del", "blackhole", GUARDED], check=False, timeout=30)


def ssh_scenario(spec: str) -> None:
    """Run in the controller's namespace by the SSH tests (``python -c``): start an
    ``ssh`` cluster as ``spec`` (JSON) says, report what the engines see as one JSON line
    on stdout, and stop it. Failures are reported, not raised."""
    options = json.loads(spec)
    timeout = options.pop("timeout", 60)
    kill_controller = options.pop("kill_controller", False)
    cluster = Cluster(engines="ssh", **options)
    report: dict[str, object] = {"controller_pid": 0}
    try:
        rc = cluster.start_and_connect_sync(timeout=timeout)
        assert cluster._process is not None
        report["controller_pid"] = cluster._process.pid
        report["hub"] = rc.info.hub_url
        report["ids"] = rc.ids
        report["addresses"] = {i: rc._records[i].address for i in rc.ids}
        report["engines"] = rc[:].apply_sync(
            lambda: (__import__("os").getpid(), __import__("os").stat("/proc/self/ns/net").st_ino)
        )
        report["sum"] = sum(rc[:].apply_sync(lambda: 1))
        report["key_seen_in"] = secrets_exposed(rc.info)
        report["curve"] = rc.info.curve is not None
        remote_runtime = options.get("env", {}).get("JUPYTER_RUNTIME_DIR")
        if remote_runtime:  # the engines' connection files, while they run
            report["connection_files"] = len(list(Path(remote_runtime).glob("kernel-engine-*")))
        if kill_controller:  # no stop at all: the ssh sessions must end the engines
            kill_pid(cluster._process.pid)
    except ClusterUnavailable as exc:
        report["error"] = str(exc)
    finally:
        cluster.stop_cluster_sync()
    print(json.dumps(report), flush=True)


def mpi_hosts_scenario(spec: str) -> None:
    """Run in the controller's namespace by the multi-host MPI test (``python -c``): start
    an ``mpi`` cluster as ``spec`` (JSON) says, report what its ranks see as one JSON
    line on stdout, and stop it. Failures are reported, not raised."""
    options = json.loads(spec)
    timeout = options.pop("timeout", 90)
    cluster = Cluster(engines="mpi", **options)
    report: dict[str, object] = {}
    started = time.monotonic()
    try:
        rc = cluster.start_and_connect_sync(timeout=timeout)
        report["ids"] = rc.ids
        report["curve"] = rc.info.curve is not None
        report["addresses"] = {i: rc._records[i].address for i in rc.ids}
        report["ranks"] = rc[:].apply_sync(
            lambda: (
                __import__("mpi4py").MPI.COMM_WORLD.rank,
                __import__("socket").gethostname(),
                __import__("os").getpid(),
                __import__("os").stat("/proc/self/ns/net").st_ino,
            )
        )
        # Every rank's rank and hostname, gathered by MPI itself (over the TCP BTL
        # between the hosts), and a sum of the ranks.
        report["collective"] = rc[:].apply_sync(
            lambda: (
                lambda comm: (
                    comm.allreduce(comm.rank),
                    comm.allgather((comm.rank, __import__("socket").gethostname())),
                )
            )(__import__("mpi4py").MPI.COMM_WORLD)
        )
        report["environ"] = rc[:].apply_sync(
            lambda: __import__("os").environ.get("LOOM_TEST_FORWARDED")
        )
        report["secrets_seen_in"] = secrets_exposed(rc.info)
        remote_runtime = options.get("env", {}).get("JUPYTER_RUNTIME_DIR")
        if remote_runtime:  # the ranks' connection files, while they run
            report["connection_files"] = len(list(Path(remote_runtime).glob("kernel-engine-*")))
    except ClusterUnavailable as exc:
        report["error"] = str(exc)
        report["failed_after"] = time.monotonic() - started
    finally:
        cluster.stop_cluster_sync()
    print(json.dumps(report), flush=True)


def processes_holding(secret: bytes) -> list[str]:
    """Processes whose command line or environment holds ``secret`` (other users could
    read those), as "pid: command"."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes()
            if secret in cmdline or secret in (proc / "environ").read_bytes():
                command = cmdline.replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc.name}: {command[:200]}")
    return found


def secrets_exposed(info: ControllerInfo) -> list[str]:
    """Processes whose argv or environment hold one of the cluster's secrets: its key, or
    a Curve secret key (the server's, the client's)."""
    secrets = [info.key]
    if info.curve is not None:
        secrets += [key for key in (info.curve.server_secret, info.curve.client_secret) if key]
    return [found for secret in secrets for found in processes_holding(secret)]


def node_engine_scenario(spec: str) -> None:
    """Run in the controller's namespace: a cluster bound to ``ip`` with no engines, and
    one engine started by ``_node_engine`` in namespace ``node`` (another "node" that
    shares this filesystem, as compute nodes share a home); report what it sees."""
    options = json.loads(spec)
    cluster = Cluster(n=0, ip=options["ip"], transport="tcp")
    report: dict[str, object] = {}
    engine: subprocess.Popen[bytes] | None = None
    try:
        rc = cluster.start_and_connect_sync(timeout=60)
        argv = ["ip", "netns", "exec", options["node"], sys.executable, "-P", "-m"]
        argv += ["parallel.launchers._node_engine", "-f", str(cluster.cluster_file)]
        engine = subprocess.Popen(argv, start_new_session=True)
        rc = cluster.wait_for_engines(1, timeout=60)
        report["address"] = rc._records[0].address
        report["curve"] = rc.info.curve is not None  # 10.9.0.1 is not loopback
        report["secrets_seen_in"] = secrets_exposed(rc.info)
        report["engine"] = rc[0].apply_sync(
            lambda: (__import__("os").getpid(), __import__("os").stat("/proc/self/ns/net").st_ino)
        )
    except ClusterUnavailable as exc:
        report["error"] = str(exc)
    finally:
        cluster.stop_cluster_sync()
        if engine is not None:
            kill_pid(engine.pid)
            engine.wait(10)
    print(json.dumps(report), flush=True)


class BrokenLauncher(CommandLauncher):
    """A launcher with a bug: it starts one engine, then raises something not a
    ``LaunchError``. The controller must report it and still stop what was started."""

    name = "broken"

    def command(self, n: int, ctx: LaunchContext) -> tuple[list[str], Mapping[str, str]]:
        return engine_argv(ctx), dict(os.environ)

    async def start(self, n: int, ctx: LaunchContext) -> None:
        await super().start(1, ctx)
        assert self.process is not None
        raise KeyError(f"a bug, after starting pid {self.process.pid}")
