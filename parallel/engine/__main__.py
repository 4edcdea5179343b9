"""``python -m parallel.engine --file CLUSTER.json``: one engine of a cluster.

``--fork N --status-fd FD``: N engines forked from one process that imported what they
need once (``_forkserver``; what the ``local`` launcher runs); ``--command-fd FD`` takes
``fork UUID`` lines (replacements), ``--log-dir DIR`` keeps each engine's stderr.
``--label NAME`` (repeated) and ``--resources gpu=1,mem=64G``: what the engine (every
forked one) carries, for load-balanced tasks that ask (``parallel.protocol._engine_traits``).
"""

import argparse
import os
import sys

from ..protocol._engine_traits import add_traits_arguments, set_traits_env

# ``._engine`` (most of what an engine imports) is imported where it is used: a fork
# server imports it with garbage collection off and freezes it (``_forkserver``).


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m parallel.engine", description="Run one engine of a Loom cluster."
    )
    parser.add_argument("-f", "--file", metavar="CLUSTER.json", required=True)
    parser.add_argument(
        "--fork", metavar="N", type=int, default=None, help="fork N engines (0: replacements only)"
    )
    parser.add_argument("--status-fd", metavar="FD", type=int, help="with --fork: report here")
    parser.add_argument(
        "--command-fd", metavar="FD", type=int, help="with --fork: read 'fork UUID' lines here"
    )
    parser.add_argument("--log-dir", metavar="DIR", help="with --fork: each engine's stderr here")
    parser.add_argument(
        "--hold",
        action="store_true",
        help="with --fork: import first, fork once 'go' comes on --command-fd (the file exists)",
    )
    parser.add_argument(
        "--uuid", metavar="UUID", help="register as this engine (a replacement: its id back)"
    )
    add_traits_arguments(parser)
    args = parser.parse_args()
    try:  # the engines read them from the environment (forked ones and replacements too)
        set_traits_env(os.environ, args.label, args.resources)
    except ValueError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    if args.fork is not None:  # 0 too: a restored controller's server forks on demand
        if args.fork < 0:
            parser.error("--fork needs 0 or more engines")
        if args.status_fd is None:
            parser.error("--fork needs --status-fd")
        if args.hold and args.command_fd is None:
            parser.error("--hold needs --command-fd")
        from ._forkserver import fork_engines

        return fork_engines(
            args.file,
            args.fork,
            args.status_fd,
            command_fd=args.command_fd,
            log_dir=args.log_dir,
            hold=args.hold,
        )
    from ._engine import run_engine

    return run_engine(args.file, engine_uuid=args.uuid)


sys.exit(main())
