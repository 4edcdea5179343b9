"""Loom's MPI, Slurm and SSH launchers vs ipyparallel's own, in one run: start -> 4 engines usable.

For each launcher (``mpi``: one ``mpiexec`` of Open MPI; ``slurm``: one ``sbatch`` job on a
one-node Slurm this script starts; ``ssh``: engines on a "host" reached with the system
``ssh``, an sshd this script starts on loopback) and each backend (Loom's ``parallel``,
ipyparallel 9),
a fresh *driver* process (this script with ``--driver BACKEND LAUNCHER``) that has already
imported its library times ``Cluster(n=4, engines=LAUNCHER)``, ``start_and_connect_sync()``
and ``rc[:].apply_sync(zero)`` returning from all four engines (the figure, ``start_s``),
then ``stop_cluster_sync()`` (``stop_s``, informative). Both backends run on the same
daemons with the same environment: Open MPI's ``OMPI_ALLOW_RUN_AS_ROOT`` pair (as root)
and ``OMPI_MCA_rmaps_base_oversubscribe=1`` (4 ranks on 2 cores), ``SLURM_CONF`` naming
the test Slurm. ipyparallel's controller binds 127.0.0.1 (its default), Loom's tcp on
127.0.0.1 (its launchers' default; Curve off on loopback), so both run their engines on
this one node.

The sshd listens on 127.0.0.1 at a free port, with a host key and a client key made for
the run (the settings of ``tests/parallel/_launch_fixtures.ssh_hosts``, without its
network namespaces: nothing leaves loopback); both backends get the same ``ssh_config``
(``-F``: that port, the client key, ``BatchMode``, no host-key check) and the absolute
interpreter path on the "host". Loom: ``Cluster(engines="ssh", hosts={"127.0.0.1": 4},
ssh_args=["-F", CONFIG])`` (one ``ssh`` for the host; CurveZMQ on, its default for ssh
engines); ipyparallel: ``Cluster(engines="ssh")`` with ``SSHEngineSetLauncher.engines =
{"127.0.0.1": 4}``, the same file as ``ssh_args`` and ``scp_args`` and ``remote_python``
(its other settings its defaults: an ``ssh`` per engine and per check, 0.1 s between
engines). After each driver, whatever still runs under sshd (a session, an engine) is
SIGKILLed by pid.

The Slurm is ``tests/parallel/_launch_fixtures.slurm``: the test fixture's
``slurm.conf`` (``SchedulerParameters=batch_sched_delay=0,sched_min_interval=0``, as
../shared/CLUSTER-TESTBED.md explains; otherwise defaults), ``auth/none``, slurmctld and
slurmd started by pid and stopped after, every job cancelled.

Loom's sources are compiled first into the run's ``PYTHONPYCACHEPREFIX``
(``bench.child_env``), as an installed package's are at install time (ipyparallel's
are): otherwise the first Loom driver, the only one of a ``--quick`` run, had its
controller and its 4 ranks each compile Loom's modules at the same time. Then one
discarded warm-up round, then interleaved rounds (the order of backends reversed every
other round); every figure is a median, the ratio Loom/ipyparallel, the target issue 12's
(<= 0.2x). This process is a child subreaper: after each driver, whatever it left (a
controller, ``mpiexec``, engines, ``srun``) is SIGKILLed by pid and waited for. A driver's
output goes to a log, whose tail is shown if it fails: a Loom driver that fails ends the
run; an ipyparallel one is counted (``peer_failures``) and left out of the medians
(its ssh start and stop run dozens of ssh commands, and under load one sometimes fails).

Needs root (the Slurm daemons, sshd), Open MPI's ``mpiexec``, Slurm, OpenSSH (``sshd``,
``ssh``, ``ssh-keygen``), ``mpi4py`` and ipyparallel;
without them it says what is missing, prints a ``BENCH_JSON`` with ``skipped`` and exits 0.
``--quick`` (the CI smoke run): MPI only (no Slurm daemons), no warm-up round, one round.
``LOOM_BENCH_LAUNCHERS=ssh`` (or ``mpi,slurm``...): only those launchers.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bench

LAUNCHERS = ("mpi", "slurm", "ssh")
BACKENDS = ("loom", "ipyparallel")
MODULES = {"loom": "parallel", "ipyparallel": "ipyparallel"}
N = 4
TARGET = 0.2
#: Seconds one driver may take (start, apply, stop) before it counts as hung.
DRIVER_TIMEOUT = 180.0
#: ``LOOM_BENCH_LAUNCHERS=ssh,mpi``: run only these launchers (a full run's rounds).
ONLY_ENV = "LOOM_BENCH_LAUNCHERS"
#: The environment variable that hands a driver the sshd's ``ssh_config``.
SSH_CONFIG_ENV = "LOOM_BENCH_SSH_CONFIG"
#: The "host" the ssh engines run on: this machine, through the sshd on loopback.
SSH_HOST = "127.0.0.1"


def cluster_options(ipp: Any, backend: str, launcher: str) -> dict[str, Any]:
    """What ``Cluster(n=N, engines=launcher, ...)`` needs besides: for ``ssh``, the host
    and the ssh settings, in each backend's own terms."""
    if launcher != "ssh":
        return {}
    ssh_args = ["-F", os.environ[SSH_CONFIG_ENV]]
    if backend == "loom":
        remote = str(Path(os.environ["JUPYTER_RUNTIME_DIR"]) / "remote")
        return {
            "hosts": {SSH_HOST: N},
            "ssh_args": ssh_args,
            "env": {"JUPYTER_RUNTIME_DIR": remote},
        }
    from traitlets.config import Config

    config = Config()
    config.SSHEngineSetLauncher.engines = {SSH_HOST: N}
    config.SSHEngineSetLauncher.ssh_args = ssh_args
    config.SSHEngineSetLauncher.scp_args = ssh_args
    config.SSHEngineSetLauncher.remote_python = sys.executable
    return {"config": config}


def driver_main(backend: str, launcher: str) -> int:
    """Start a cluster of N engines with ``launcher``, apply on all, stop; print JSON."""
    import importlib

    ipp = importlib.import_module(MODULES[backend])
    ipp.Cluster, ipp.Client  # noqa: B018 (Loom's names load lazily: now)
    t0 = time.perf_counter()
    cluster = ipp.Cluster(n=N, engines=launcher, **cluster_options(ipp, backend, launcher))
    try:
        rc = cluster.start_and_connect_sync()
        result = rc[:].apply_sync(lambda: 0)
        start_s = time.perf_counter() - t0
        if result != [0] * N:
            print(f"apply on all engines returned {result!r}", file=sys.stderr)
            return 1
    finally:
        t1 = time.perf_counter()
        cluster.stop_cluster_sync()
        stop_s = time.perf_counter() - t1
    print("RESULT " + json.dumps({"start_s": start_s, "stop_s": stop_s}), flush=True)
    return 0


def missing(launchers: tuple[str, ...]) -> list[str]:
    """What this machine lacks to run the benchmark."""
    tools = ["mpiexec", *(["sbatch", "slurmctld", "slurmd"] if "slurm" in launchers else [])]
    tools += ["ssh", "ssh-keygen", "scp"] if "ssh" in launchers else []
    lacks = [f"{tool} (not on PATH)" for tool in tools if shutil.which(tool) is None]
    if "ssh" in launchers and not os.access(SSHD, os.X_OK):
        lacks.append(f"{SSHD} (OpenSSH's server)")
    for module in ("mpi4py", "ipyparallel"):
        try:
            __import__(module)
        except ImportError:
            lacks.append(f"{module} (not installed)")
    if {"slurm", "ssh"} & set(launchers) and os.geteuid() != 0:
        lacks.append("root (the Slurm daemons, sshd)")
    return lacks


def run_driver(
    backend: str, launcher: str, env: dict[str, str], workdir: Path, daemons: Daemons
) -> dict[str, float]:
    """One driver, to its end; its RESULT, or RuntimeError with the tail of its log."""
    own = workdir / f"{launcher}-{backend}-{time.monotonic_ns()}"
    own.mkdir()
    env = {
        **env,
        "JUPYTER_RUNTIME_DIR": str(own / "runtime"),
        "IPYTHONDIR": str(own / "ipython"),
        "LOOM_HISTORY_FILE": str(own / "history.sqlite"),
    }
    log = own / "driver.log"
    argv = [sys.executable, "-P", __file__, "--driver", backend, launcher]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=own, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        code = proc.wait(DRIVER_TIMEOUT)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        bench.sigkill_group(proc.pid)
        proc.wait(10)
        # Not the Slurm daemons (this process's children too) nor what they run: a job
        # left behind is cancelled, and its tasks killed, by ``clean_slurm``. The sshd
        # stays, and whatever runs under it (sessions, engines) is killed.
        keep = {pid for daemon in daemons.slurm for pid in (daemon, *bench.descendants(daemon))}
        keep |= daemons.sshd
        left = [pid for pid in bench.descendants(os.getpid()) if pid not in keep]
        for pid in left:
            bench.sigkill_group(pid)
        if still := bench.wait_gone(left, 20.0):
            raise RuntimeError(f"processes left by the {backend} {launcher} driver: {still}")
    if "SLURM_CONF" in env:
        clean_slurm(env)
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    if code != 0 or not lines:
        how = "hung" if code is None else f"exited with {code}"
        shown = text if len(text) < 4000 else f"{text[:1500]}\n[...]\n{text[-2500:]}"
        raise DriverFailed(f"{backend} {launcher} driver {how}; its output:\n{shown}")
    result: dict[str, float] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def precompile(env: dict[str, str]) -> None:
    """Compile Loom's packages into ``env``'s ``PYTHONPYCACHEPREFIX`` (module docstring)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", "kernel", "parallel", "shell"],
        cwd=bench.REPO, env=env, check=True, timeout=300, stdout=subprocess.DEVNULL,
    )  # fmt: skip


class DriverFailed(RuntimeError):
    """A driver did not finish (its start, apply or stop failed or hung)."""


def fixtures() -> Any:
    """``tests/parallel/_launch_fixtures``: the test Slurm (``slurm``, ``slurm_steps``)."""
    import importlib

    folder = str(bench.REPO / "tests" / "parallel")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("_launch_fixtures")


def clean_slurm(env: dict[str, str]) -> None:
    """Cancel any job a driver left on the test Slurm and kill its tasks by pid."""
    conf = Path(env["SLURM_CONF"])
    if fixtures().slurm_steps(conf, tasks_only=True):
        subprocess.run(["scancel", "--full", "--partition", "debug"], env=env, timeout=30)
        for pid in fixtures().slurm_steps(conf, tasks_only=True):
            bench.sigkill_group(pid)


@dataclass
class Daemons:
    """The daemons this run started, which drivers' leftovers must not include: the
    Slurm daemons with what they run (``clean_slurm`` sees to jobs), and sshd and its
    reaper alone."""

    slurm: set[int] = field(default_factory=set)
    sshd: set[int] = field(default_factory=set)


#: OpenSSH's server (Debian's path).
SSHD = "/usr/sbin/sshd"
#: sshd runs under this: a subreaper that reaps whatever is orphaned below it. An engine
#: whose ssh session ended would otherwise be this process's zombie (it is a subreaper,
#: blocked in waiting for a driver), and ipyparallel's stop waits (over ssh, psutil)
#: until its engines are gone, which a zombie is not: every ipyparallel stop hung.
REAPER = """\
import ctypes, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
daemon = subprocess.Popen(sys.argv[1:])
while os.wait()[0] != daemon.pid:
    pass
"""


@contextlib.contextmanager
def running_sshd(workdir: Path, env: dict[str, str], timeout: float = 30.0) -> Iterator[set[int]]:
    """An sshd on 127.0.0.1 at a free port (under ``REAPER``), keys made for this run,
    ``SSH_CONFIG_ENV`` in ``env`` naming the client's ``ssh_config``; yields the pids of
    sshd and its reaper, SIGKILLed after."""
    folder = workdir / "sshd"
    fixtures().ssh_keys(folder)
    port = fixtures().free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"ListenAddress {SSH_HOST}\nPort {port}\nHostKey {folder / 'host'}\n"
        f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
        "PasswordAuthentication no\nAllowStreamLocalForwarding yes\n"
        # ipyparallel keeps an ssh per engine open and opens more: sshd's default (10
        # connections authenticating at once, then drops) made some of them fail.
        "MaxStartups 100\n"
        "Subsystem sftp internal-sftp\n"  # OpenSSH 9's scp (ipyparallel's) speaks SFTP
    )
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True, timeout=30)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    daemon = subprocess.Popen(
        [sys.executable, "-c", REAPER, SSHD, "-D", "-e", "-f", str(config)],
        stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        assert daemon.stderr is not None
        ready, _, _ = select.select([daemon.stderr], [], [], timeout)  # "Server listening"
        line = daemon.stderr.readline().decode(errors="replace") if ready else ""
        if "Server listening" not in line:
            raise RuntimeError(f"sshd did not start: {line!r}")
        client = folder / "ssh_config"
        client.write_text(
            f"Host *\n  Port {port}\n  User {pwd.getpwuid(os.geteuid()).pw_name}\n"
            f"  IdentityFile {folder / 'client'}\n  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n"
            "  ConnectTimeout 30\n"
        )
        env[SSH_CONFIG_ENV] = str(client)
        yield {daemon.pid, *bench.descendants(daemon.pid)}  # the reaper, sshd
    finally:
        bench.sigkill_group(daemon.pid)
        daemon.wait(10)
        if daemon.stderr is not None:
            daemon.stderr.close()


@contextlib.contextmanager
def running_slurm(workdir: Path, env: dict[str, str]) -> Iterator[set[int]]:
    """The test Slurm, ``SLURM_CONF`` in ``env``; yields its daemons' pids."""
    (workdir / "slurm").mkdir()
    t_phase = time.perf_counter()
    with fixtures().slurm(workdir / "slurm") as conf:
        env["SLURM_CONF"] = str(conf)
        print(f"slurm up in {time.perf_counter() - t_phase:.1f} s", flush=True)
        yield set(bench.descendants(os.getpid()))  # slurmctld, slurmscriptd, slurmd


def main() -> int:
    quick, rounds = bench.start_run("bench_launchers", __doc__, quick=1, full=5)
    # The CI smoke run (--quick): MPI only, no daemons.
    launchers: tuple[str, ...] = LAUNCHERS[:1] if quick else LAUNCHERS
    if chosen := os.environ.get(ONLY_ENV):  # a subset, to measure one change
        launchers = tuple(name for name in LAUNCHERS if name in chosen.split(","))
        if not launchers:
            print(f"{ONLY_ENV}={chosen!r} names none of {', '.join(LAUNCHERS)}", file=sys.stderr)
            return 2
    lacks = missing(launchers)
    if lacks:
        print(f"skipped: this machine lacks {', '.join(lacks)}")
        bench.print_bench_json({"benchmark": "launchers", "quick": quick, "skipped": lacks})
        return 0
    bench.become_subreaper()

    failures: dict[str, int] = {}  # launcher -> ipyparallel drivers that failed
    samples: dict[str, dict[str, list[dict[str, float]]]] = {
        launcher: {backend: [] for backend in BACKENDS} for launcher in launchers
    }
    with tempfile.TemporaryDirectory(prefix="bench-launchers-") as tmp:
        workdir = Path(tmp)
        env = bench.child_env(workdir)
        env.update(OMPI_MCA_rmaps_base_oversubscribe="1")
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        env.pop("SLURM_CONF", None)
        precompile(env)
        slurm: contextlib.AbstractContextManager[set[int]] = (
            running_slurm(workdir, env) if "slurm" in launchers else contextlib.nullcontext(set())
        )
        sshd: contextlib.AbstractContextManager[set[int]] = (
            running_sshd(workdir, env) if "ssh" in launchers else contextlib.nullcontext(set())
        )
        with slurm as slurm_pids, sshd as sshd_pids:
            daemons = Daemons(slurm_pids, sshd_pids)
            warmup = 0 if quick else 1
            for round_no in range(warmup + rounds):
                order = BACKENDS if round_no % 2 else BACKENDS[::-1]
                for launcher in launchers:
                    for backend in order:
                        tag = "warm-up" if round_no < warmup else f"round {round_no - warmup + 1}"
                        try:
                            result = run_driver(backend, launcher, env, workdir, daemons)
                        except DriverFailed as exc:
                            if backend == "loom":
                                raise
                            # ipyparallel's ssh start and stop run dozens of ssh commands;
                            # one that fails under load ends its driver: shown and counted,
                            # the medians are the runs that finished.
                            print(f"{tag}: {launcher:5} {backend:11} FAILED: {exc}", flush=True)
                            failures[launcher] = failures.get(launcher, 0) + 1
                            continue
                        print(
                            f"{tag}: {launcher:5} {backend:11} start {result['start_s']:.2f} s"
                            f", stop {result['stop_s']:.2f} s",
                            flush=True,
                        )
                        if round_no >= warmup:
                            samples[launcher][backend].append(result)
    report: dict[str, Any] = {"benchmark": "launchers", "quick": quick, "metrics": {}}
    report["peer_failures"] = failures
    print()
    print(f"{'start -> 4 engines usable':<28} {'n':>2} {'loom':>8} {'ipyparallel':>12} "
          f"{'ratio':>7}  target")  # fmt: skip
    for launcher in launchers:
        if not samples[launcher]["ipyparallel"]:
            print(f"{launcher:<28} no ipyparallel driver finished: no ratio")
            continue
        for figure in ("start_s", "stop_s"):
            loom = statistics.median(r[figure] for r in samples[launcher]["loom"])
            peer = statistics.median(r[figure] for r in samples[launcher]["ipyparallel"])
            ratio = loom / peer
            target = TARGET if figure == "start_s" else None
            met = None if target is None else ratio <= target
            verdict = "(informative)" if target is None else f"<= {target}x"
            label = f"{launcher} {'start' if figure == 'start_s' else 'stop'}"
            print(
                f"{label:<28} {len(samples[launcher]['loom']):>2} {loom:>7.2f}s "
                f"{peer:>11.2f}s {ratio:>6.3f}x  {verdict}{'  MISSED' if met is False else ''}"
            )
            report["metrics"][f"{launcher}_{figure}"] = {
                "unit": "s", "loom": loom, "ipyparallel": peer, "ratio": ratio,
                "target": None if target is None else f"<= {target}x", "met": met,
                "n": len(samples[launcher]["loom"]),
            }  # fmt: skip
    for launcher, count in failures.items():
        print(f"({count} ipyparallel {launcher} driver(s) failed; the medians leave them out)")
    bench.print_bench_json(report)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--driver":
        sys.exit(driver_main(sys.argv[2], sys.argv[3]))
    sys.exit(main())
