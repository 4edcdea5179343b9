"""The task-record options (``--no-db``, ``--durability``), defined once.

``python -m parallel.controller`` and ``loom cluster start`` / ``loom controller`` take
the same two options; both parsers get them from :func:`add_record_arguments`. A module
of its own, so the ``loom`` command line does not import the controller to build its
``--help``.
"""

from __future__ import annotations

import argparse

__all__ = ["DURABILITY", "add_record_arguments"]

#: ``--durability`` choices: ``async`` (records committed in the background) or ``sync``.
DURABILITY = ("async", "sync")


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    """``--no-db`` (records in memory only) and ``--durability async|sync``."""
    parser.add_argument(
        "--no-db", action="store_true", help="keep task records in memory only (no database)"
    )
    parser.add_argument(
        "--durability",
        choices=DURABILITY,
        default="async",
        help="sync: each reply waits until its record is committed (slower; docs/parallel.md)",
    )
