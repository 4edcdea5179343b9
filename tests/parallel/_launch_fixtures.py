"""Launchers and helpers for the launcher tests.

``ScriptLauncher`` is a user-defined launcher as docs/parallel.md shows one: a
``parallel.launchers`` subclass named ``"_launch_fixtures:ScriptLauncher"`` (the
controller imports it; ``tests/parallel`` is put on its ``PYTHONPATH``). Its ``script``
runs under ``sh -c`` with ``$ENGINE`` (the command that starts one engine) and ``$N``,
so a test can make a launcher that fails, hangs or starts only some engines.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from _cluster_support import isolate

from kernel.client import wait_pid_exit
from parallel import Cluster
from parallel.launchers import LaunchContext, LaunchError
from parallel.launchers._command import CommandLauncher, engine_argv
from parallel.launchers._launched_process import tail_of


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
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
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
NodeName={host} NodeAddr=127.0.0.1 CPUs=8
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
PartitionName=closed Nodes=ALL MaxTime=INFINITE State=DOWN
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (CI runs these as root)")


@contextlib.contextmanager
def slurm(directory: Path, timeout: float = 60.0) -> Iterator[Path]:
    """slurmctld and slurmd for one node (this host), with ``auth/none``; yields the
    ``slurm.conf`` path (set ``SLURM_CONF`` to it). Every job is cancelled and both
    daemons are stopped by pid afterwards."""
    need_root("a test Slurm (slurmctld, slurmd)")
    for sub in ("state", "spool"):
        (directory / sub).mkdir(parents=True)
    conf = directory / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            host=socket.gethostname(),
            ctld_port=free_port(),
            slurmd_port=free_port(),
            dir=directory,
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons: list[subprocess.Popen[bytes]] = []
    try:
        for argv in (
            ["/usr/sbin/slurmctld", "-D", "-c", "-i", "-f", str(conf)],
            ["/usr/sbin/slurmd", "-D", "-f", str(conf)],
        ):
            log = (directory / f"{Path(argv[0]).name}.out").open("wb")
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
                logs = "\n".join(tail_of(directory / n) for n in ("slurmctld.log", "slurmd.log"))
                pytest.fail(f"Slurm did not come up (node state {state!r}):\n{logs}")
            done = subprocess.run(
                ["sinfo", "-h", "-p", "debug", "-o", "%T"],
                env=env, capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            state = done.stdout.strip()
            if state != "idle":
                time.sleep(0.2)
        yield conf
    finally:
        if daemons and daemons[0].poll() is None:
            subprocess.run(
                ["scancel", "--full", "--partition", "debug"], env=env, timeout=30, check=False
            )
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
