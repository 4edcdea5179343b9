"""A controller inside a Slurm batch job: ``Cluster(engines="slurm", controller="job")``.

Two roles, one module:

``--outside`` (what ``Cluster`` spawns instead of a local controller): submit one job
whose script runs this module ``--inside``, report the job's state on stdout as any
launcher does (``pending`` with Slurm's reason, ``running``, ``failed`` with the job's
output), wait for the controller in the job to write its cluster file (in a directory
under Jupyter's runtime directory, which the nodes share with this host, as a home
directory is shared on a cluster), then write that file's path on ``--ready-fd`` as a
local controller does. It stays until SIGTERM or SIGINT, the end of ``--parent``, or the
end of the job; then ``scancel`` and waits until the job is over.

``--inside`` (the job script's command, on the job's first node): bind the address this
node uses to reach the submitting host (``$SLURM_SUBMIT_HOST``), then become the
controller (``exec``), which starts the engines with ``srun`` (the ``srun`` launcher).

Waiting for the cluster file polls the file system: a file written on another node
raises no local event (inotify does not see NFS writes from other hosts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sys
from pathlib import Path

from kernel.protocol import runtime_dir

from ._base import LaunchContext, LaunchError, make_launcher
from ._slurm import SlurmLauncher
from ._status import LauncherStatus

#: Seconds between two looks for the cluster file the job's controller writes.
FILE_POLL = 0.2


def _address_towards(host: str) -> str:
    """The local address this node uses to reach ``host`` (127.0.0.1 if unknown)."""
    try:
        target = socket.getaddrinfo(host, 9, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            return str(probe.getsockname()[0])
    except (OSError, IndexError):
        return "127.0.0.1"


def inside(args: argparse.Namespace) -> int:
    ip = _address_towards(os.environ.get("SLURM_SUBMIT_HOST", "localhost"))
    launcher = json.dumps({"engines": "srun", "options": json.loads(args.srun)})
    argv = [sys.executable, "-P", "-m", "parallel.controller", "-n", str(args.n)]
    argv += ["--transport", "tcp", "--ip", ip, "--file", args.file, "--launcher", launcher]
    os.execv(sys.executable, argv)


async def _stopped(parent: int | None) -> None:
    """Return on SIGTERM, SIGINT or (if given) the exit of process ``parent``."""
    loop = asyncio.get_running_loop()
    told = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, told.set)
    fd = None
    if parent:
        try:
            fd = os.pidfd_open(parent)
            loop.add_reader(fd, told.set)
        except ProcessLookupError:
            told.set()
    try:
        await told.wait()
    finally:
        if fd is not None:
            loop.remove_reader(fd)
            os.close(fd)


async def outside(args: argparse.Namespace) -> int:
    spec = json.loads(args.spec)
    options = dict(spec.get("options", {}))
    launcher = make_launcher("slurm", options)
    assert isinstance(launcher, SlurmLauncher)
    token = secrets.token_hex(6)
    workdir = runtime_dir() / f"loom-job-{token}"
    workdir.mkdir(mode=0o700, parents=True)
    cluster_file = workdir / f"loom-cluster-{token}.json"
    srun = {"python": launcher.python, "env": launcher.env}
    launcher.job_command = [
        launcher.python, "-P", "-m", "parallel.launchers._job_controller", "--inside",
        "-n", str(args.n), "--file", str(cluster_file), "--srun", json.dumps(srun),
    ]  # fmt: skip
    status = 1
    try:
        async with asyncio.TaskGroup() as tg:
            ctx = LaunchContext(cluster_file, tg, workdir=workdir, cluster_id=token)
            stop = tg.create_task(_stopped(args.parent))
            try:
                await launcher.start(args.n, ctx)
            except LaunchError as exc:
                ctx.report(LauncherStatus("failed", str(exc), exc.output[-2000:]))
                stop.cancel()
                return 1
            while not (cluster_file.exists() or stop.done() or _failed(ctx)):
                await asyncio.wait({stop}, timeout=FILE_POLL)  # polls: see the docstring
            if cluster_file.exists() and not stop.done():
                _announce(cluster_file, args.ready_fd)
                while not (stop.done() or _failed(ctx)):
                    await asyncio.wait({stop}, timeout=1.0)
                status = 0
            stop.cancel()
            await launcher.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def _failed(ctx: LaunchContext) -> bool:
    return ctx.status is not None and ctx.status.state == "failed"


def _announce(path: Path, ready_fd: int | None) -> None:
    print(f"loom controller ready {path}", flush=True)
    if ready_fd is not None:
        with contextlib.suppress(OSError), open(ready_fd, "w", encoding="utf-8") as pipe:
            pipe.write(f"{path}\n")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m parallel.launchers._job_controller")
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--outside", action="store_true")
    role.add_argument("--inside", action="store_true")
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("--spec", default="{}", help="the slurm launcher's options (JSON)")
    parser.add_argument("--ready-fd", type=int, default=None)
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--file", default="")
    parser.add_argument("--srun", default="{}")
    args = parser.parse_args()
    if args.inside:
        return inside(args)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(outside(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
