"""``python -m parallel.controller`` (and ``loom controller``): arguments, then the controller.

A plain local start (``-n N`` engines, the ``local`` launcher, no ``--restore``) starts
the engines' fork server right after parsing the arguments, before this process imports
asyncio, pyzmq, the hub and the records: the server's imports and the controller's then
run side by side instead of one after the other (``_fork_server``). Hence this module
imports only what parsing needs; the controller itself (``_controller``) is imported
after that.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from ._record_options import add_record_arguments

if TYPE_CHECKING:
    from ._fork_server import ForkServer

__all__ = ["main"]

#: ``--restart-limit``'s default: ``_restarts``' MAX_DEATHS/DEATH_WINDOW (a test says they
#: agree), written out so that parsing does not import it (dataclasses: ~20 ms of CPU
#: before the fork server could start).
DEFAULT_RESTART_LIMIT = "3/60"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m parallel.controller", description="Run a Loom cluster's controller."
    )
    parser.add_argument("-n", "--engines", type=int, default=0, help="local engines to start")
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument(
        "--transport",
        choices=("tcp", "ipc"),
        default="tcp",
        help="ipc: socket files in a private directory (one machine, this user only)",
    )
    parser.add_argument("-f", "--file", default=None, help="where to write the cluster file")
    parser.add_argument("--parent", type=int, default=None, help="stop when this PID exits")
    parser.add_argument("--ready-fd", type=int, default=None, help="write the file's path here")
    add_record_arguments(parser)
    parser.add_argument(
        "--restore",
        action="store_true",
        help="take over the cluster of --file (default: the newest) whose controller died",
    )
    parser.add_argument(
        "--launcher",
        default='{"engines": "local"}',
        help='how to start the engines: {"engines": NAME, "options": {...}} (JSON)',
    )
    parser.add_argument("--no-restart", action="store_true", help="do not replace engines that die")
    parser.add_argument(
        "--restart-limit",
        default=DEFAULT_RESTART_LIMIT,
        metavar="DEATHS/SECONDS",
        help="give up on an engine that died DEATHS times within SECONDS (default: %(default)s)",
    )
    security = parser.add_mutually_exclusive_group()
    security.add_argument(
        "--curve",
        action="store_true",
        default=None,
        help="CurveZMQ even on loopback (it is on by default on any other address)",
    )
    security.add_argument(
        "--insecure-plaintext",
        dest="curve",
        action="store_false",
        help="no CurveZMQ on a non-loopback address: traffic readable on the network",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="lose an engine whose heartbeat is silent this long (default: 3 on this machine,"
        " 10 over a network)",
    )
    parser.add_argument(
        "--setup-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="announce a joining engine with an error when one recorded setup item runs"
        " this long (default: 300)",
    )
    return parser


def plain_local(engines: int, restore: bool, launcher: str) -> bool:
    """Whether a start forks its engines with the ``local`` launcher as is (no options),
    so that its fork server can start before the controller's imports (pure)."""
    if engines <= 0 or restore:
        return False
    try:
        spec = json.loads(launcher)
    except ValueError:
        return False  # said later, by launcher_from_json
    return isinstance(spec, dict) and spec.get("engines") == "local" and not spec.get("options")


def main(argv: list[str] | None = None) -> int:
    """``python -m parallel.controller [-n N] [--ip IP] [--file PATH] [--parent PID]``."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.engines < 0:
        parser.error("-n must be 0 or more")
    if args.curve and args.transport == "ipc":
        parser.error("--curve needs --transport tcp (ipc admits only this user already)")
    if args.heartbeat_timeout is not None and not args.heartbeat_timeout > 0:
        parser.error("--heartbeat-timeout must be more than 0 seconds")
    if args.setup_timeout is not None and not args.setup_timeout > 0:
        parser.error("--setup-timeout must be more than 0 seconds")
    early: ForkServer | None = None
    cluster_id: str | None = None
    if plain_local(args.engines, args.restore, args.launcher):
        from pathlib import Path

        from ._fork_server import ForkServer, default_cluster_file, new_cluster_id

        # The id and the file's path are chosen here: the server's engines carry the path.
        cluster_id = new_cluster_id()
        path = Path(args.file) if args.file else default_cluster_file(cluster_id)
        args.file = path
        early = ForkServer(args.engines, path, path.parent / f"loom-launch-{cluster_id}")
    try:
        return _run(parser, args, early, cluster_id)
    finally:
        if early is not None and early.commands is not None:  # never handed to its launcher
            early.discard()


def _run(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    early: ForkServer | None,
    cluster_id: str | None,
) -> int:
    """The controller, once its fork server (if any) is started: the rest of the checks,
    then :func:`~._controller.run_controller` until it stops."""
    import asyncio
    import contextlib
    import logging

    from kernel.protocol._freshness import replay_skew as skew_from_env

    from ..launchers import LaunchError
    from ._controller import _said_in_one_line, launcher_from_json, restart_policy, run_controller
    from ._local_engines import LocalEngines

    try:
        policy = None if args.no_restart else restart_policy(args.restart_limit)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        launcher = launcher_from_json(args.launcher)
    except LaunchError as exc:
        parser.error(str(exc))
    try:
        skew = skew_from_env()
    except ValueError as exc:
        print(f"loom controller: {exc}", file=sys.stderr)
        return 2
    if early is not None and isinstance(launcher, LocalEngines):
        launcher.prestarted(early)
    logging.basicConfig(format="[loom controller] %(levelname)s %(message)s")
    one_line: tuple[type[Exception], ...] = ()
    if args.restore:  # (not imported otherwise: the controller's start, above)
        from ._durable import RestoreError

        one_line = (RestoreError,)
    with contextlib.suppress(KeyboardInterrupt), _said_in_one_line(*one_line):
        return asyncio.run(
            run_controller(
                ip=args.ip,
                transport=args.transport,
                engines=args.engines,
                cluster_file=args.file,
                parent_pid=args.parent,
                ready_fd=args.ready_fd,
                launcher=launcher,
                curve=args.curve,
                db=not args.no_db,
                durability=args.durability,
                restore=args.restore,
                restart=policy,
                heartbeat_timeout=args.heartbeat_timeout,
                setup_timeout=args.setup_timeout,
                replay_skew=skew,
                cluster_id=cluster_id,
            )
        )
    return 130
