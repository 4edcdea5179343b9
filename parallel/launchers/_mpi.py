"""The ``mpi`` launcher: every engine is one rank of one ``mpiexec`` (Open MPI).

``mpiexec -n N [args] PYTHON -P -m parallel.launchers._node_engine --mpi -f CLUSTER.json``.
Each rank imports ``mpi4py`` (MPI_Init) and registers with the hub *in rank order*
(rank r waits for rank r-1's registration), so engine ``i`` is rank ``i`` of
``MPI.COMM_WORLD`` in a cluster whose only engines are these, for the cluster's life.
A rank on another node binds that node's address (``_node_engine``).

Settings for the ranks (the ``env`` option overrides any of them):
- as root, Open MPI refuses to run without ``OMPI_ALLOW_RUN_AS_ROOT=1`` and its
  ``..._CONFIRM=1``; they are set only when the controller runs as root;
- ``OMPI_MCA_rmaps_base_oversubscribe=1``: engines mostly wait, so more engines than
  cores is normal (without it Open MPI says "not enough slots");
- ``OMPI_MCA_odls_base_sigkill_timeout=4``: a stopped rank has 4 s, not 1, to remove
  its connection file before it is SIGKILLed (``RANK_STOP_GRACE``);
- ``JPY_PARENT_PID``: the controller, so ranks on its host end if it dies;
- for a job on this one node (``one_node``; guessed: ``mpi_args`` name no hosts and no
  batch allocation is in the environment), what makes Open MPI start faster there
  (``ONE_NODE_ENV``): ``OMPI_MCA_pml=ob1`` (shared memory; UCX's transport layer
  probes the network devices at MPI_Init) and ``HWLOC_COMPONENTS=-pci,-linuxio`` (no
  I/O device discovery: hwloc read every PCI device's configuration space in
  ``mpiexec`` and in each rank, for network-card locality one node does not need).
  On the 2-core test machine, 4 ranks' MPI_Init took ~0.12 s less CPU (of ~0.19 s,
  with ``mpiexec``'s) and ~0.2 s less wall time.

The ranks live and die together: ``mpiexec`` ends the job when one rank exits, and
:meth:`stop` SIGTERMs ``mpiexec`` (which forwards it), then SIGKILLs its group.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence

from ..protocol._engine_traits import LABELS_ENV, RESOURCES_ENV
from ._base import LaunchContext, LaunchError
from ._command import CommandLauncher

__all__ = ["MPILauncher"]


def _strings(name: str, value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise LaunchError(f"{name} must be a list of strings, not {value!r}")
    if not all(isinstance(item, str) for item in value):
        raise LaunchError(f"{name} must be a list of strings, not {value!r}")
    return list(value)


#: Seconds a rank has between the SIGTERM and the SIGKILL of Open MPI's daemons when the
#: job stops (Open MPI's default: 1). A rank removes its connection file (it holds the
#: cluster's key, on its node) when SIGTERMed; on a loaded node a second was seen to be
#: too short, and the file stayed. Below the launcher's own grace for ``mpiexec`` (5 s).
RANK_STOP_GRACE = 4
SIGKILL_TIMEOUT_ENV = "OMPI_MCA_odls_base_sigkill_timeout"

#: Open MPI settings for a job on one node (the module docstring says why), unless
#: the environment or the ``env`` option sets them.
ONE_NODE_ENV = {"OMPI_MCA_pml": "ob1", "HWLOC_COMPONENTS": "-pci,-linuxio"}
#: ``mpiexec`` options that name other hosts (Open MPI 4 and 5 spellings).
HOST_OPTIONS = frozenset(
    {
        "-H", "-host", "--host", "-hostfile", "--hostfile", "-machinefile", "--machinefile",
        "-default-hostfile", "--default-hostfile", "-rf", "-rankfile", "--rankfile",
        "--map-by-hostfile",
    }
)  # fmt: skip
#: Variables of a batch job's allocation, whose nodes Open MPI's mpiexec runs on.
ALLOCATION_ENV = (
    "SLURM_JOB_ID", "SLURM_JOBID", "PBS_JOBID", "PBS_NODEFILE", "LSB_JOBID", "PE_HOSTFILE",
    "FLUX_JOB_ID", "COBALT_JOBID", "OAR_JOB_ID", "OMPI_MCA_orte_default_hostfile",
)  # fmt: skip


def guess_one_node(mpi_args: Sequence[str], env: Mapping[str, str]) -> bool:
    """Whether ``mpiexec mpi_args`` runs on this node only: no option names hosts (also
    as ``--host=a,b``), and no batch allocation (Slurm, PBS, LSF, SGE, Flux...) is in
    ``env``. A guess: a default hostfile of Open MPI's installation is not read."""
    if any(arg.split("=", 1)[0] in HOST_OPTIONS for arg in mpi_args):
        return False
    return not any(env.get(name) for name in ALLOCATION_ENV)


def host_counts(value: object) -> dict[str, int]:
    """``hosts`` checked: host name -> slots (``{"node1": 2}``; a list means one each)."""
    if isinstance(value, Mapping):
        counts = dict(value)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        counts = {host: 1 for host in value}
    else:
        raise LaunchError(f"hosts must map host names to engine counts, not {value!r}")
    if not counts:
        raise LaunchError("hosts is empty: name at least one host")
    for host, count in counts.items():
        # Open MPI's --host list is "name:slots,name:slots", and ssh takes the name as
        # one argument: no commas, colons or spaces (nor a leading "-", an option).
        if (
            not isinstance(host, str)
            or not host
            or host.startswith("-")
            or any(c in host for c in ",: \t\n")
        ):
            raise LaunchError(f"hosts: {host!r} is not a host name")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise LaunchError(f"hosts: {host!r} needs a positive engine count, not {count!r}")
    return counts


def _environment(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise LaunchError(f"env must map names to strings, not {value!r}")
    return dict(value)


class MPILauncher(CommandLauncher):
    """``Cluster(n=4, engines="mpi", mpiexec="mpiexec", mpi_args=[...], env={...})``.

    ``hosts``: the nodes and their ranks (``{"node1": 2, "node2": 2}``: ``mpiexec --host
    node1:2,node2:2``, which starts the ranks on other nodes through ``ssh``, Open MPI's
    ``plm_rsh_agent``); ``n`` defaults to their sum. ``one_node``: whether the job runs
    on this node only (its Open MPI settings are then ``ONE_NODE_ENV``); None (the
    default): guessed (``guess_one_node``)."""

    name = "mpi"
    starts_before_controller = True  # its engines need only the file's path

    def __init__(
        self,
        mpiexec: str = "mpiexec",
        mpi_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        python: str | None = None,
        one_node: bool | None = None,
        hosts: Mapping[str, int] | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if one_node is not None and not isinstance(one_node, bool):
            raise LaunchError(f"one_node must be True, False or None, not {one_node!r}")
        if not isinstance(mpiexec, str) or not mpiexec:
            raise LaunchError(f"mpiexec must be a command, not {mpiexec!r}")
        if python is not None and not (isinstance(python, str) and os.path.isabs(python)):
            raise LaunchError(f"python must be an absolute path, not {python!r}")
        self.mpiexec = mpiexec
        self.mpi_args = _strings("mpi_args", mpi_args)
        self.env = _environment(env or {})
        self.python = python or sys.executable
        self.one_node = one_node
        self.hosts = host_counts(hosts) if hosts is not None else None
        if self.hosts is not None and guess_one_node(self.mpi_args, {}) is False:
            raise LaunchError("name the hosts in hosts= or in mpi_args, not in both")

    def default_count(self) -> int | None:
        """Every host's count with ``hosts``; else one per local CPU."""
        return sum(self.hosts.values()) if self.hosts is not None else None

    def host_args(self) -> list[str]:
        """``--host node1:2,node2:2`` for ``hosts`` (nothing without it)."""
        if self.hosts is None:
            return []
        return ["--host", ",".join(f"{host}:{count}" for host, count in self.hosts.items())]

    def command(self, n: int, ctx: LaunchContext) -> tuple[list[str], Mapping[str, str]]:
        mpiexec = shutil.which(self.mpiexec)
        if mpiexec is None:
            raise LaunchError(
                f"{self.mpiexec}: not found (install Open MPI, e.g. apt-get install openmpi-bin)"
            )
        env = dict(os.environ)
        env.pop("JPY_PARENT_PID", None)
        if os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
        env.setdefault(SIGKILL_TIMEOUT_ENV, str(RANK_STOP_GRACE))
        one_node = self.one_node
        if one_node is None:
            one_node = guess_one_node([*self.host_args(), *self.mpi_args], {**env, **self.env})
        if one_node:
            for name, value in ONE_NODE_ENV.items():
                env.setdefault(name, value)
        env["JPY_PARENT_PID"] = str(os.getpid())
        env.update(self.env)
        argv = [mpiexec, "-n", str(n), *self.host_args(), *self.mpi_args]
        # Open MPI hands ranks on other nodes only the variables -x names: the engines'
        # labels and resources (Cluster(labels=...)) and the env option must reach them too.
        forwarded = [name for name in (LABELS_ENV, RESOURCES_ENV) if name in env]
        forwarded += [name for name in self.env if name not in forwarded]
        argv += [arg for name in forwarded for arg in ("-x", name)]
        argv += [self.python, "-P", "-m"]
        argv += ["parallel.launchers._node_engine", "--mpi", "-f", str(ctx.cluster_file)]
        return argv, env
