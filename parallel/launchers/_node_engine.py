"""An engine started by a launcher on any node: ``python -P -m parallel.launchers._node_engine
-f CLUSTER.json [--mpi | --fork N]`` (what ``mpi`` and ``slurm`` run).

It runs the engine as ``python -m parallel.engine`` would, with these changes: the
address it binds, its controller watch, (``--fork``) several engines from one
process, and (``--mpi``) the order ranks register in (``register``, looked up by
``run_engine`` as a module global):

- **Its own address.** An engine binds the address in the cluster file, the
  controller's. On another node that address is not local, so this entry point finds the
  address this node uses to reach the controller (a UDP socket "connected" to the hub
  sends nothing, it only picks the route) and has the engine bind that one
  (``run_engine(bind=...)``); the engine still reaches the hub at the cluster file's
  address: its registration, and its hub link (controller watch, task records), which
  once dialled the engine's own address and so never reached the hub from another node
  (no re-registration after a partition, and an exit after the controller grace). On
  the controller's node nothing changes.
- **Its controller's life.** On the controller's node, ``JPY_PARENT_PID`` is set to the
  controller's pid (from the cluster file), so the engine ends when the controller does
  however it ends; elsewhere a pid means nothing, and the hub's heartbeats tell.
- **One process, several engines** (``--fork N``): the ``local`` launcher's fork
  server (``parallel.engine._forkserver``) on this node: one interpreter imports what an
  engine needs once and forks ``N`` engines, rather than ``N`` interpreters each paying
  ~0.2 s of CPU for the same imports. What the ``slurm`` launcher runs for a job on one
  node.
- **Rank order** (``--mpi``). It imports ``mpi4py`` first (MPI_Init on the main thread,
  where cells run), and rank r registers only after rank r-1 did, so the hub (which
  numbers engines in registration order) gives rank r the id r in a cluster whose only
  engines are these ranks. Not under plain ``srun``: mpi4py's singleton init kills the
  task there.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from kernel.protocol import ConnectionFileError

from ..protocol._controller_info import ControllerInfo

#: The MPI tag of the "I registered" token (any tag no user code will match by chance).
TAG = 0x100E


def address_towards(info: ControllerInfo) -> str:
    """The local address this host uses to reach the controller's hub."""
    family = socket.AF_INET6 if ":" in info.ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((info.ip, info.hub_port))
        except OSError:
            return info.ip  # no route: the engine's own error will say where it failed
        return str(probe.getsockname()[0])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m parallel.launchers._node_engine")
    parser.add_argument("-f", "--file", metavar="CLUSTER.json", required=True)
    parser.add_argument("--mpi", action="store_true", help="register in MPI rank order")
    parser.add_argument(
        "--fork", metavar="N", type=int, help="fork N engines from one process (one node's)"
    )
    args = parser.parse_args()
    if args.fork is not None and (args.fork < 1 or args.mpi):
        parser.error("--fork needs 1 or more engines, and no --mpi (each rank is a process)")
    cluster_file = args.file
    # The one launcher module that imports the engine (tests/test_layers.py says so):
    # it is the engine's entry point on the nodes.
    from ..engine import _engine as engine

    try:
        info = ControllerInfo.read(cluster_file)
    except ConnectionFileError as exc:  # as run_engine says it
        print(f"loom engine: {exc}", file=sys.stderr)
        return 2
    here = address_towards(info) if info.transport == "tcp" else info.ip
    if here == info.ip and info.pid > 0:
        # The controller's own node: its pid means it here, so the engine ends with it
        # (the kernel's parent watch), even if the controller is SIGKILLed.
        os.environ["JPY_PARENT_PID"] = str(info.pid)
    bind = here if here != info.ip else None
    if args.fork is not None:
        from ..engine._forkserver import fork_engines

        # Its "started PID UUID" / "exited PID CODE" lines go to this process's stdout
        # (the job's output file); nobody reads them as commands.
        return fork_engines(cluster_file, args.fork, os.dup(1), bind=bind)
    if args.mpi:
        engine.register = _in_rank_order(engine.register)
    code: int = engine.run_engine(cluster_file, bind=bind)
    return code


def _in_rank_order(register: Callable[..., int]) -> Callable[..., int]:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()

    def register_in_rank_order(*a: Any, **k: Any) -> int:
        if rank > 0:
            comm.recv(source=rank - 1, tag=TAG)
        engine_id = register(*a, **k)
        if rank + 1 < size:
            comm.send(engine_id, dest=rank + 1, tag=TAG)  # small: sent eagerly, no wait
        return engine_id

    return register_in_rank_order


if __name__ == "__main__":
    sys.exit(main())
