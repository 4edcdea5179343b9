"""One MPI rank's engine: ``python -P -m parallel.launchers._mpi_engine -f CLUSTER.json``.

Runs in the engine process, under ``mpiexec``. It imports ``mpi4py`` first (MPI_Init on
the main thread, where cells run, so user code can use ``MPI.COMM_WORLD`` at once), then
runs the engine as ``python -m parallel.engine`` would, with one change: registrations
happen in rank order. Rank r waits for rank r-1's engine id before it registers and
passes its own on, so the hub (which numbers engines in registration order) gives rank
r the id r in a cluster whose only engines are these ranks.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

#: The MPI tag of the "I registered" token (any tag no user code will match by chance).
TAG = 0x100E


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m parallel.launchers._mpi_engine")
    parser.add_argument("-f", "--file", metavar="CLUSTER.json", required=True)
    args = parser.parse_args()
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    # The one launcher module that imports the engine (tests/test_layers.py says so):
    # it is the engine's entry point under mpiexec. register is looked up by run_engine
    # as a module global, so replacing it here orders the registrations.
    from parallel.engine import _engine as engine

    register = engine.register

    def register_in_rank_order(*a: Any, **k: Any) -> int:
        if rank > 0:
            comm.recv(source=rank - 1, tag=TAG)
        engine_id: int = register(*a, **k)
        if rank + 1 < size:
            comm.send(engine_id, dest=rank + 1, tag=TAG)  # small: sent eagerly, no wait
        return engine_id

    engine.register = register_in_rank_order
    code: int = engine.run_engine(args.file)
    return code


if __name__ == "__main__":
    sys.exit(main())
