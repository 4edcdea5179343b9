"""``python -m parallel.engine --file CLUSTER.json``: one engine of a cluster.

``--fork N --status-fd FD``: N engines forked from one process that imported what they
need once (``_forkserver``; what the ``local`` launcher runs); ``--command-fd FD`` takes
``fork UUID`` lines (replacements), ``--log-dir DIR`` keeps each engine's stderr.
"""

import argparse
import sys

from ._engine import run_engine


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m parallel.engine", description="Run one engine of a Loom cluster."
    )
    parser.add_argument("-f", "--file", metavar="CLUSTER.json", required=True)
    parser.add_argument("--fork", metavar="N", type=int, default=0, help="fork N engines")
    parser.add_argument("--status-fd", metavar="FD", type=int, help="with --fork: report here")
    parser.add_argument(
        "--command-fd", metavar="FD", type=int, help="with --fork: read 'fork UUID' lines here"
    )
    parser.add_argument("--log-dir", metavar="DIR", help="with --fork: each engine's stderr here")
    args = parser.parse_args()
    if args.fork:
        if args.status_fd is None:
            parser.error("--fork needs --status-fd")
        from ._forkserver import fork_engines

        return fork_engines(
            args.file,
            args.fork,
            args.status_fd,
            command_fd=args.command_fd,
            log_dir=args.log_dir,
        )
    return run_engine(args.file)


sys.exit(main())
