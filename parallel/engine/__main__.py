"""``python -m parallel.engine --file CLUSTER.json``: one engine of a cluster."""

import argparse
import sys

from ._engine import run_engine


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m parallel.engine", description="Run one engine of a Loom cluster."
    )
    parser.add_argument("-f", "--file", metavar="CLUSTER.json", required=True)
    return run_engine(parser.parse_args().file)


sys.exit(main())
