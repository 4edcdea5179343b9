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
- **Its controller's file.** ``mpi`` and ``slurm`` start their engines while the
  controller starts (``Launcher.starts_before_controller``), so the cluster file may not
  exist yet: the engine waits for it (``CLUSTER_FILE_WAIT``), then connects as usual.
- **Its controller's life.** On the controller's node, ``JPY_PARENT_PID`` is set to the
  controller's pid (from the cluster file), so the engine ends when the controller does
  however it ends; elsewhere a pid means nothing, and the hub's heartbeats tell.
- **One process, several engines** (``--fork N``): the ``local`` launcher's fork
  server (``parallel.engine._forkserver``) on this node: one interpreter imports what an
  engine needs once and forks ``N`` engines, rather than ``N`` interpreters each paying
  ~0.2 s of CPU for the same imports. What the ``slurm`` launcher runs for a job on one
  node.
- **Rank order** (``--mpi``). It initializes MPI first (MPI_Init on the main thread,
  where cells run, while a thread imports the engine: ``_import_during_mpi_init``), and
  rank r registers only after rank r-1 did (waiting without spinning:
  ``wait_politely``), so the hub (which
  numbers engines in registration order) gives rank r the id r in a cluster whose only
  engines are these ranks. Not under plain ``srun``: mpi4py's singleton init kills the
  task there.
- **A controller it cannot reach.** One bound to its own loopback (the default) serves
  only its host: an engine on another host says so and exits (``loopback_elsewhere``),
  and the start fails with that line at once rather than at its timeout.
- **Its connection file at SIGTERM** (how ``mpiexec`` and Slurm stop engines): removed
  before the signal's default action ends the process (``_removing_its_file_on_sigterm``);
  the controller cleans only its own runtime directory, and a node's may be another.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import gc
import importlib
import importlib.util
import ipaddress
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from kernel.protocol import ConnectionFileError

from ..protocol._controller_info import ControllerInfo

#: The MPI tag of the "I registered" token (any tag no user code will match by chance).
TAG = 0x100E
#: Seconds an engine waits for its cluster file: the controller starts ``mpi`` and
#: ``slurm`` engines before it writes it (``Launcher.starts_before_controller``).
CLUSTER_FILE_WAIT = 120.0


def wait_for_file(path: str, timeout: float) -> bool:
    """Whether ``path`` exists within ``timeout`` seconds. The controller writes the
    cluster file atomically (a rename), so once it exists it is whole. Polled: on a
    compute node the file is often on a network file system, where inotify does not see
    another machine's writes; 10 ms while the controller usually starts, then 100 ms."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while not os.path.exists(path):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        if time.monotonic() > deadline - timeout + 2.0:
            pause = 0.1
    return True


def address_towards(info: ControllerInfo) -> str:
    """The local address this host uses to reach the controller's hub."""
    family = socket.AF_INET6 if ":" in info.ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((info.ip, info.hub_port))
        except OSError:
            return info.ip  # no route: the engine's own error will say where it failed
        return str(probe.getsockname()[0])


def loopback_elsewhere(info: ControllerInfo, timeout: float = 10.0) -> bool:
    """Whether the controller is bound to a loopback address and this is another host: no
    one listens at its hub's port here (the cluster file is written after the hub is
    bound, so on the controller's host someone does). A connection refused says so at
    once, where the engine's registration would wait for its whole timeout; anything
    else (a timeout, no route) is left to the engine to report."""
    try:
        if not ipaddress.ip_address(info.ip).is_loopback:
            return False
    except ValueError:  # a host name
        return False
    try:
        with socket.create_connection((info.ip, info.hub_port), timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


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
    # Start-up allocates much and frees little: collecting meanwhile cost ~6% of the
    # imports' CPU. Resumed (what start-up made frozen) before the engine runs.
    gc.disable()
    # The one launcher module that imports the engine (tests/test_layers.py says so):
    # it is the engine's entry point on the nodes. Everything an engine and its first
    # task import (``preload``), as a forked engine has it: a rank's first task waited
    # for the interpreter, cloudpickle... (~0.03 s of CPU each) on a loaded machine.
    if args.mpi:  # the imports run while MPI_Init waits (see _import_during_mpi_init)
        engine: Any = _import_during_mpi_init("parallel.engine._engine", _preload_engine)
    else:
        from ..engine import _engine as engine

        if args.fork is None:  # (fork_engines preloads, then forks)
            _preload_engine()

    if not wait_for_file(cluster_file, CLUSTER_FILE_WAIT):
        print(
            f"loom engine: the cluster file {cluster_file} did not appear within "
            f"{CLUSTER_FILE_WAIT:g} s (its controller did not start?)",
            file=sys.stderr,
        )
        return 2
    try:
        info = ControllerInfo.read(cluster_file)
    except ConnectionFileError as exc:  # as run_engine says it
        print(f"loom engine: {exc}", file=sys.stderr)
        return 2
    if info.transport == "tcp" and loopback_elsewhere(info):
        print(
            f"loom engine: the controller is bound to {info.ip}, its host's loopback, which "
            f"this host ({socket.gethostname()}) cannot reach: start it on an address the "
            "engines' hosts reach (Cluster(ip=...), loom cluster start --ip ...)",
            file=sys.stderr,
        )
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
    engine.register = _removing_its_file_on_sigterm(engine.register, engine.engine_connection_file)
    gc.freeze()  # start-up's objects: later collections skip them
    gc.enable()
    code: int = engine.run_engine(cluster_file, bind=bind)
    return code


def _removing_its_file_on_sigterm(
    register: Callable[..., int], connection_file: Callable[[ControllerInfo, int], Any]
) -> Callable[..., int]:
    """``register``, after which SIGTERM first removes this engine's connection file.

    ``mpiexec`` and Slurm stop their engines with SIGTERM, whose default action ends the
    process where it stands: its connection file (the cluster's key, and its Curve client
    keypair) stayed. The controller removes its own host's, but a node whose runtime
    directory is not the controller's kept them. The signal then does what it did (the
    default action, re-raised), so the exit status the launcher sees is unchanged."""

    def register_then_watch_sigterm(controller: ControllerInfo, *a: Any, **k: Any) -> int:
        engine_id = register(controller, *a, **k)
        path = connection_file(controller, engine_id)

        def remove_then_end(signum: int, frame: object) -> None:
            with contextlib.suppress(OSError):
                os.unlink(path)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        signal.signal(signal.SIGTERM, remove_then_end)
        return engine_id

    return register_then_watch_sigterm


def _preload_engine() -> None:
    from ..engine._forkserver import preload

    preload()


def _import_during_mpi_init(module: str, then: Callable[[], object] | None = None) -> ModuleType:
    """Import ``module`` (then call ``then``, more imports) on a thread while this
    (main) thread is in ``MPI_Init_thread``.

    MPI_Init takes ~0.3 s (Open MPI 4.1 probing its transports), mostly waiting, and
    mpi4py's own init (at ``import mpi4py.MPI``) holds the GIL throughout, so the
    engine's ~0.2 s of imports could only come after it. Called through ctypes, which
    releases the GIL, the two overlap. MPI is still initialized on the main thread (where
    cells run), at mpi4py's default level (``MPI_THREAD_MULTIPLE``); mpi4py then finds it
    initialized and only sets itself up. Whatever is unusual (mpi4py told not to
    initialize or at another level, an MPI whose constants may differ, a library that
    does not export the symbol) leaves the init to mpi4py, after the imports.
    """
    loaded: list[ModuleType] = []
    failed: list[BaseException] = []

    def load() -> None:
        try:
            loaded.append(importlib.import_module(module))
            if then is not None:
                then()
        except BaseException as exc:  # raised again on the main thread
            failed.append(exc)

    importer = threading.Thread(target=load, name="loom-engine-imports")
    importer.start()
    try:
        _mpi_init_without_gil()
    finally:
        importer.join()
    if failed:
        raise failed[0]
    return loaded[0]


#: ``MPI_THREAD_MULTIPLE`` in the Open MPI and MPICH ABIs (not the MPI-5 standard ABI's).
_THREAD_MULTIPLE = 3


def _mpi_init_without_gil() -> None:
    """``MPI_Init_thread(MULTIPLE)`` through ctypes, or nothing (mpi4py will init)."""
    try:
        import mpi4py

        spec = importlib.util.find_spec("mpi4py.MPI")  # the extension for this MPI's ABI
        origin = spec.origin if spec is not None else None
        if (
            origin is None
            or ".mpiabi." in os.path.basename(origin)
            or mpi4py.rc.initialize is not True
            or mpi4py.rc.thread_level != "multiple"
        ):
            return
        # Loads the extension as a plain library (no module init) with its libmpi, as
        # the import below will find it; RTLD_GLOBAL as mpi4py loads it (MPI plugins).
        libmpi = ctypes.CDLL(origin, mode=os.RTLD_NOW | os.RTLD_GLOBAL)
        init, finalized, finalize = (
            libmpi.MPI_Init_thread,
            libmpi.MPI_Finalized,
            libmpi.MPI_Finalize,
        )
    except (ImportError, OSError, AttributeError, ValueError):
        return
    init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    init.restype = ctypes.c_int
    provided = ctypes.c_int(-1)
    code = init(None, None, _THREAD_MULTIPLE, ctypes.byref(provided))
    if code != 0:  # MPI's default error handler aborts before this: a safety net
        raise SystemExit(f"loom engine: MPI_Init_thread failed (error {code})")

    def finalize_at_exit() -> None:
        # mpi4py finalizes only an MPI it initialized; mpiexec calls a rank that exits
        # without MPI_Finalize an abnormal termination. (A served engine ends with
        # os._exit, as before: this is for exits before or instead of serving.)
        done = ctypes.c_int(0)
        finalized(ctypes.byref(done))
        if not done.value:
            finalize()

    atexit.register(finalize_at_exit)  # before mpi4py's own: so it runs after it


#: Seconds between two checks of a receive (``wait_politely``): first, and at most.
POLL_FIRST, POLL_MAX = 0.0005, 0.005


def wait_politely(request: Any) -> Any:
    """Wait for an MPI ``request`` (mpi4py) to complete without spinning; its message.

    Open MPI's blocking receive spins: a rank waiting 1 s for its turn used 1 s of CPU,
    taken, on a node with more ranks than cores, from the ranks still importing, the ones
    it waits for. Checked instead at growing intervals up to ``POLL_MAX`` (each check is
    a few microseconds), so a turn passes within ~5 ms."""
    pause = POLL_FIRST
    while True:
        done, message = request.test()
        if done:
            return message
        time.sleep(pause)
        pause = min(pause * 2, POLL_MAX)


def _in_rank_order(register: Callable[..., int]) -> Callable[..., int]:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()

    def register_in_rank_order(*a: Any, **k: Any) -> int:
        if rank > 0:
            wait_politely(comm.irecv(source=rank - 1, tag=TAG))
        engine_id = register(*a, **k)
        if rank + 1 < size:
            comm.send(engine_id, dest=rank + 1, tag=TAG)  # small: sent eagerly, no wait
        return engine_id

    return register_in_rank_order


if __name__ == "__main__":
    sys.exit(main())
