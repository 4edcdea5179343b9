"""``loom cluster start|stop|list``, ``loom controller`` and ``loom engine``.

``start`` returns once N engines are registered and leaves the cluster running in the
background (its controller in a session of its own); ``stop`` asks the controller to stop
(it stops the engines it started) and waits for it, killing it if it does not go; ``list``
shows each cluster file of the runtime directory with its controller and engines, and
flags files whose controller is gone. Every failure is one line on stderr and a non-zero
exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from kernel.client import wait_pid_exit
from kernel.protocol import ConnectionFileError, runtime_dir

from .._errors import ParallelError
from ..controller._record_options import add_record_arguments
from ..protocol._controller_info import CLUSTER_FILE_GLOB, ControllerInfo, newest_cluster_file
from ..protocol._engine_traits import add_traits_arguments, format_resources, set_traits_env
from ..protocol._hub_messages import EngineRecord

__all__ = ["add_cluster_arguments", "run_cluster_command", "run_controller_command"]

#: How long ``stop`` waits for a controller to exit before SIGKILL (seconds).
STOP_WAIT = 15.0


def add_cluster_arguments(
    cluster: argparse.ArgumentParser,
    controller: argparse.ArgumentParser,
    engine: argparse.ArgumentParser,
) -> None:
    """The options of ``loom cluster``, ``loom controller`` and ``loom engine``."""
    actions = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    start = actions.add_parser("start", help="start a controller and N engines in the background")
    start.add_argument(
        "-n", type=int, default=None, help="number of engines (default: one per CPU, or the hosts')"
    )
    _add_launcher_arguments(start)
    start.add_argument(
        "--transport", choices=("ipc", "tcp"), default=None, help="ipc for local engines, else tcp"
    )
    start.add_argument("--ip", default="127.0.0.1", help="address to bind with --transport tcp")
    start.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for engines")
    start.add_argument(
        "--restore",
        nargs="?",
        const=True,
        default=False,
        metavar="FILE",
        help="take over the cluster whose controller died (default: the newest cluster file):"
        " same addresses, its engines re-attach, its recorded results are kept",
    )
    add_record_arguments(start)
    start.add_argument("--no-restart", action="store_true", help="do not replace engines that die")
    start.add_argument(
        "--restart-limit",
        metavar="DEATHS/SECONDS",
        help="give up on an engine that died DEATHS times within SECONDS (default 3/60)",
    )
    add_traits_arguments(start)
    start.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=None,
        metavar="S",
        help="lose an engine silent this long (default: 3 s on this machine, 10 s over a network)",
    )
    start.add_argument(
        "--setup-timeout",
        type=float,
        default=None,
        metavar="S",
        help="announce a joining engine with an error when one setup item runs this long"
        " (default 300 s)",
    )
    _add_security_arguments(start)
    stop = actions.add_parser("stop", help="stop a cluster (default: the newest)")
    stop.add_argument("file", nargs="?", help="its cluster file")
    stop.add_argument("--all", action="store_true", help="stop every cluster")
    actions.add_parser("list", help="list clusters, their controllers and engines")
    controller.add_argument("-n", type=int, default=0, help="engines to start")
    _add_launcher_arguments(controller)
    controller.add_argument("--transport", choices=("ipc", "tcp"), default="tcp")
    controller.add_argument("--ip", default="127.0.0.1")
    controller.add_argument("-f", "--file", default=None, help="where to write the cluster file")
    controller.add_argument(
        "--restore", action="store_true", help="take over the dead controller of --file"
    )
    add_record_arguments(controller)
    controller.add_argument(
        "--no-restart", action="store_true", help="do not replace engines that die"
    )
    controller.add_argument(
        "--restart-limit",
        metavar="DEATHS/SECONDS",
        help="give up on an engine that died DEATHS times within SECONDS (default 3/60)",
    )
    _add_security_arguments(controller)
    engine.add_argument("-f", "--file", required=True, help="the cluster file")
    add_traits_arguments(engine)


def _add_security_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--curve",
        action="store_true",
        default=None,
        help="CurveZMQ encryption even on loopback (on by default on any other address)",
    )
    group.add_argument(
        "--insecure-plaintext",
        dest="curve",
        action="store_false",
        help="no CurveZMQ off loopback: anyone on the network can read the traffic",
    )


def _security_argv(curve: bool | None) -> list[str]:
    return [] if curve is None else ["--curve" if curve else "--insecure-plaintext"]


def _add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engines",
        default="local",
        metavar="LAUNCHER",
        help="who starts the engines: local, mpi, slurm, ssh or package.module:Class",
    )
    parser.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a launcher option, e.g. -o partition=debug -o 'hosts={\"node1\": 4}' "
        "(a value that is not JSON is a string)",
    )


def run_controller_command(args: argparse.Namespace) -> int:
    if args.command == "engine":
        from ..engine._engine import run_engine

        try:  # the engine reads them from its environment (parallel.protocol._engine_traits)
            set_traits_env(os.environ, args.label, args.resources)
        except ValueError as exc:
            print(f"loom engine: {exc}", file=sys.stderr)
            return 2
        return run_engine(args.file)
    from ..controller._main import main

    try:
        spec = {"engines": args.engines, "options": _launcher_options(args.option)}
    except ValueError as exc:
        print(f"loom controller: {exc}", file=sys.stderr)
        return 2
    argv = ["-n", str(args.n), "--transport", args.transport, "--ip", args.ip]
    argv += ["--launcher", json.dumps(spec)]
    argv += ["--durability", args.durability, *(["--no-db"] if args.no_db else [])]
    argv += ["--restore"] if args.restore else []
    if args.no_restart:
        argv += ["--no-restart"]
    if args.restart_limit:
        argv += ["--restart-limit", args.restart_limit]
    argv += _security_argv(args.curve)
    return main([*argv, *(["--file", args.file] if args.file else [])])


def run_cluster_command(args: argparse.Namespace) -> int:
    """Run ``loom cluster ACTION``; the exit status."""
    try:
        if args.cluster_command == "start":
            return _start(args)
        if args.cluster_command == "stop":
            return _stop(args)
        return _list()
    except (ParallelError, ConnectionFileError) as exc:
        print(f"loom cluster {args.cluster_command}: {exc}", file=sys.stderr)
        return 1


def _start(args: argparse.Namespace) -> int:
    from .._errors import ClusterUnavailable
    from ._cluster import Cluster

    if args.n is not None and args.n < 0:
        raise ClusterUnavailable("-n must be 0 or more")
    if args.restore:  # said in one line here, before a controller is started for nothing
        path = Path(args.restore) if isinstance(args.restore, str) else newest_cluster_file()
        info = ControllerInfo.read(path)
        if _alive(info.pid):
            raise ClusterUnavailable(
                f"the controller of {path} (pid {info.pid}) is running: nothing to restore"
            )
        args.restore = str(path)
    try:
        cluster = Cluster(
            n=args.n,
            ip=args.ip,
            engines=args.engines,
            transport=args.transport,
            detached=True,
            db=not args.no_db,
            durability=args.durability,
            restore=args.restore,
            restart_engines=not args.no_restart,
            restart_limit=args.restart_limit,
            labels=args.label or None,
            resources=args.resources,
            heartbeat_timeout=args.heartbeat_timeout,
            setup_timeout=args.setup_timeout,
            curve=args.curve,
            **_launcher_options(args.option),
        )
    except ValueError as exc:
        raise ClusterUnavailable(str(exc)) from None
    if args.restore:
        client = cluster.restore_sync(timeout=min(args.timeout, 15.0))
        count = len(client.ids)
        cluster.release()
        print(f"Cluster {cluster.cluster_file} restored; {count} engines re-attached.")
        return 0
    client = cluster.start_and_connect_sync(timeout=args.timeout)
    count = len(client.ids)
    cluster.release()
    print(f"Cluster started with {count} engines. Connect with parallel.Client() or:")
    print(f"    parallel.Client({str(cluster.cluster_file)!r})")
    return 0


def _launcher_options(pairs: list[str]) -> dict[str, Any]:
    """``-o NAME=VALUE`` options: VALUE is JSON, or else a plain string."""
    options: dict[str, Any] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.isidentifier():
            raise ValueError(f"-o {pair!r}: use NAME=VALUE, e.g. -o partition=debug")
        try:
            options[name] = json.loads(value)
        except ValueError:
            options[name] = value
    return options


def _stop(args: argparse.Namespace) -> int:
    if args.all:
        files = sorted(runtime_dir().glob(CLUSTER_FILE_GLOB))
        if not files:
            print("no clusters are running")
        return max([_stop_one(path) for path in files], default=0)
    return _stop_one(Path(args.file) if args.file else newest_cluster_file())


def _stop_one(path: Path) -> int:
    info = ControllerInfo.read(path)
    if not _alive(info.pid):
        from ..controller._engines_file import stop_orphans

        stop_orphans(path)  # engines outlive a dead controller for a grace period
        _remove_leftovers(info, path)
        print(
            f"cluster {info.cluster_id}: its controller (pid {info.pid}) was already gone; "
            f"removed {path}"
        )
        return 0
    with contextlib.suppress(ProcessLookupError):
        os.kill(info.pid, signal.SIGTERM)  # the controller stops its engines, then exits
    if not wait_pid_exit(info.pid, STOP_WAIT):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(info.pid, signal.SIGKILL)
        _remove_leftovers(info, path)
        print(f"cluster {info.cluster_id}: the controller did not stop in {STOP_WAIT:g} s; killed")
        return 1
    print(f"cluster {info.cluster_id} stopped")
    return 0


def _remove_leftovers(info: ControllerInfo, path: Path) -> None:
    """What a controller that could not clean up leaves: its file, its records and its
    ipc directory."""
    from ..controller._durable import remove_records

    remove_records(path)
    path.unlink(missing_ok=True)
    for engine_file in runtime_dir().glob(f"kernel-engine-{info.cluster_id}-*.json"):
        engine_file.unlink(missing_ok=True)
    if info.transport == "ipc" and Path(info.ip).name.startswith("loom-"):
        shutil.rmtree(info.ip, ignore_errors=True)
    from ..protocol._shm import remove_cluster_dir

    remove_cluster_dir(info.cluster_id)  # its shared-memory buffers (protocol/_shm.py)


def _list() -> int:
    from ..client._pool_client import Client

    files = sorted(runtime_dir().glob(CLUSTER_FILE_GLOB), key=lambda p: p.stat().st_mtime)
    if not files:
        print("no clusters are running (start one with `loom cluster start -n 4`)")
        return 0
    for path in files:
        info = ControllerInfo.read(path)
        if not _alive(info.pid):
            print(
                f"{info.cluster_id}  controller pid {info.pid} is gone (stale file {path}; "
                "restore it with `loom cluster start --restore FILE`, or remove it with "
                "`loom cluster stop FILE`)"
            )
            continue
        try:
            with Client(path, timeout=2.0) as client:
                records = dict(client._records)
                restarts = dict(client.restarts)
                joining = list(client.joining)
        except ParallelError as exc:
            print(f"{info.cluster_id}  controller pid {info.pid} not answering: {exc}")
            continue
        print(
            f"{info.cluster_id}  controller pid {info.pid}  {info.transport}  "
            f"{len(records)} engines  {path}"
        )
        for engine_id, record in sorted(records.items()):
            restarted = restarts.get(engine_id)
            note = ""
            if restarted is not None:
                times = "once" if restarted.count == 1 else f"{restarted.count} times"
                note = f"  restarted {times} (last: {restarted.reason})"
            print(f"    engine {engine_id}  pid {record.pid}  running{_traits(record)}{note}")
        for entry in joining:
            print(
                f"    engine {entry.get('id')}  pid {entry.get('pid')}  joining: the controller"
                " is replaying the recorded setup on it"
            )
    return 0


def _traits(record: EngineRecord) -> str:
    """``"  labels bigmem,x  resources gpu=1,mem=64G"``, or "" for an engine with none."""
    text = f"  labels {','.join(record.labels)}" if record.labels else ""
    return text + (f"  resources {format_resources(record.resources)}" if record.resources else "")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie nobody reaped has exited: not alive)."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
