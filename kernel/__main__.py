"""``python -m kernel -f CONNECTION_FILE`` runs a Loom kernel."""

from __future__ import annotations

import argparse
import sys


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m kernel", description="Run a Loom kernel.")
    parser.add_argument("-f", "--connection-file", metavar="FILE", default=None)
    args = parser.parse_args()
    from .server import run_kernel

    return run_kernel(args.connection_file)


if __name__ == "__main__":
    sys.exit(main())
