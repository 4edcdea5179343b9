"""The ``slurm`` launcher: the engines are one ``sbatch`` job (several nodes: a task each).

The job script (in the launcher's directory, next to the cluster file, which the compute
nodes must see: a shared home, as usual on a cluster) is::

    #!/bin/sh
    #SBATCH --job-name=loom-engines-<cluster id>
    #SBATCH --ntasks=<n>
    #SBATCH --output=<dir>/slurm-%j.out
    #SBATCH --partition=... --time=... --account=...   (each on its own line, if given)
    #SBATCH <each of sbatch_lines>
    export NAME='value'                                (each of env)
    unset JPY_PARENT_PID
    if [ "${SLURM_JOB_NUM_NODES:-1}" = 1 ]; then
      exec PYTHON -P -m parallel.launchers._node_engine -f CLUSTER.json --fork <n>
    fi
    exec srun PYTHON -P -m parallel.launchers._node_engine -f CLUSTER.json

(``_node_engine``: an engine that binds the address its node uses to reach the
controller, so engines on other nodes than the controller's work.) A job on one node
starts no ``srun`` step: its batch script forks the ``n`` engines from one interpreter
that imported them once (``--fork``, the ``local`` launcher's fork server), which saves
a step launch and ``n - 1`` Python starts and imports (~0.2 s of CPU each). A job on
several nodes runs one ``srun`` task per engine, and so does any job with ``srun=True``
or an ``sbatch_lines`` option ``...-per-task`` (per-task GPUs, CPUs, binding, and
``SLURM_PROCID`` are what a task has and a forked engine does not).

After ``sbatch --parsable``, a watcher asks ``squeue`` for the job's state: while it is
``PENDING`` the launcher reports ``pending`` with Slurm's reason (so a start that times
out says "job 17 is PENDING (Resources)" instead of hanging), then ``running``; a job
that ends before :meth:`stop` is reported ``failed`` with the end of its output file.
:meth:`stop` runs ``scancel`` and waits until Slurm says the job is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ._base import LaunchContext, Launcher, LaunchError
from ._launched_process import run_command, tail_of
from ._mpi import _environment, _strings
from ._status import LauncherStatus, State

__all__ = ["SlurmLauncher"]

#: Seconds between two ``squeue`` while the job is pending or starting, and once it runs.
POLL_STARTING = 0.5
POLL_RUNNING = 5.0
#: Seconds after the job starts running during which it is still polled as starting: a
#: job whose engines fail at once (a bad setting, a missing module) ends within its
#: first seconds, and the start that waits for them should hear it then, not ~5 s later.
STARTING_GRACE = 15.0
#: Seconds a Slurm command may take (a busy slurmctld answers slowly).
COMMAND_TIMEOUT = 30.0
#: Seconds :meth:`stop` waits for a cancelled job to be over.
CANCEL_WAIT = 10.0
#: Job states of a job that is over (squeue keeps them for MinJobAge, then forgets it).
ENDED = frozenset(
    {
        "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
        "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "TIMEOUT",
    }
)  # fmt: skip
_TIME = re.compile(r"^[0-9:-]+$")  # Slurm's time formats: minutes, [d-]h:m:s...


class SlurmLauncher(Launcher):
    """``Cluster(n=8, engines="slurm", partition="debug", time="1:00:00", account=...,
    sbatch_lines=["--mem=4G"], env={"OMP_NUM_THREADS": "1"}, srun=False)``."""

    name = "slurm"
    starts_before_controller = True  # its engines need only the file's path

    def __init__(
        self,
        partition: str | None = None,
        time: str | None = None,
        account: str | None = None,
        sbatch_lines: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        python: str | None = None,
        job_name: str | None = None,
        srun: bool = False,
    ) -> None:
        for name, value in (("partition", partition), ("account", account), ("job_name", job_name)):
            if value is not None and not (isinstance(value, str) and value and value.isprintable()):
                raise LaunchError(f"{name} must be a non-empty string, not {value!r}")
        if time is not None and not (isinstance(time, str) and _TIME.match(time)):
            raise LaunchError(f"time must be a Slurm time such as '30' or '1:00:00', not {time!r}")
        if python is not None and not (isinstance(python, str) and os.path.isabs(python)):
            raise LaunchError(f"python must be an absolute path, not {python!r}")
        lines = _strings("sbatch_lines", sbatch_lines)
        for line in lines:
            if "\n" in line or not line.strip():
                raise LaunchError(f"sbatch_lines: {line!r} is not one option line")
        if not isinstance(srun, bool):
            raise LaunchError(f"srun must be true or false, not {srun!r}")
        self.partition, self.time, self.account, self.job_name = partition, time, account, job_name
        #: One srun task per engine even on one node: what per-task options need
        #: (--gpus-per-task, --cpus-per-task, binding), so they imply it.
        self.srun = srun or any("per-task" in line for line in lines)
        self.sbatch_lines = [line.removeprefix("#SBATCH").strip() for line in lines]
        self.env = _environment(env or {})
        for key in self.env:
            if not key.isidentifier():
                raise LaunchError(f"env: {key!r} is not a variable name")
        self.python = python or sys.executable
        self.job_id: str | None = None
        #: What the job runs instead of ``srun`` engines (``controller="job"``: the
        #: controller itself, which starts the engines with ``srun``).
        self.job_command: list[str] | None = None
        self._stopping = False
        #: Set by :meth:`stop`: wakes the watcher from its poll interval at once (the
        #: controller's task group waits for the watcher before the controller exits).
        self._stopped = asyncio.Event()
        self._workdir = Path()

    def script(self, n: int, ctx: LaunchContext) -> str:
        """The job script for ``n`` engines."""
        lines = [
            "#!/bin/sh",
            f"#SBATCH --job-name={self.job_name or f'loom-engines-{ctx.cluster_id}'}",
            f"#SBATCH --ntasks={n}",
            f"#SBATCH --output={ctx.workdir / 'slurm-%j.out'}",
        ]
        for option, value in (
            ("partition", self.partition),
            ("time", self.time),
            ("account", self.account),
        ):
            if value is not None:
                lines.append(f"#SBATCH --{option}={value}")
        lines += [f"#SBATCH {line}" for line in self.sbatch_lines]
        lines += [f"export {key}={shlex.quote(value)}" for key, value in self.env.items()]
        lines.append("unset JPY_PARENT_PID")
        if self.job_command is not None:
            lines.append(f"exec {shlex.join(self.job_command)}")
        else:
            engine = [self.python, "-P", "-m", "parallel.launchers._node_engine"]
            engine += ["-f", str(ctx.cluster_file)]
            # A job on one node needs no srun step: the batch script, already on that
            # node with the job's CPUs, forks the engines from one interpreter (one
            # Python start and one set of imports rather than n, and no step launch).
            if not self.srun:
                lines += [
                    'if [ "${SLURM_JOB_NUM_NODES:-1}" = 1 ]; then',
                    f"  exec {shlex.join([*engine, '--fork', str(n)])}",
                    "fi",
                ]
            lines.append(f"exec srun {shlex.join(engine)}")
        return "\n".join(lines) + "\n"

    async def start(self, n: int, ctx: LaunchContext) -> None:
        self._workdir = ctx.workdir
        sbatch = shutil.which("sbatch")
        if sbatch is None:
            raise LaunchError("sbatch: not found (install Slurm's client commands)")
        script = ctx.workdir / "engines.sbatch"
        script.write_text(self.script(n, ctx), encoding="utf-8")
        log = ctx.workdir / "sbatch.log"
        code, out = await run_command(
            [sbatch, "--parsable", str(script)], log=log, env=None, timeout=COMMAND_TIMEOUT
        )
        found = re.match(r"\s*(\d+)", out)
        if code != 0 or found is None:
            raise LaunchError(f"sbatch failed ({_exit(code)})", out)
        self.job_id = found.group(1)
        ctx.report(LauncherStatus("pending", f"slurm job {self.job_id} submitted"))
        ctx.tg.create_task(self._watch(ctx), name=f"loom-slurm-{self.job_id}")

    def _output_file(self) -> Path:
        return self._workdir / f"slurm-{self.job_id}.out"

    async def _state(self) -> tuple[str, str]:
        """The job's (state, reason) from ``squeue``; ("", "") if Slurm forgot it."""
        log = self._workdir / "squeue.log"
        log.unlink(missing_ok=True)
        # -t all: a job that just ended is listed with how it ended (COMPLETED, FAILED...)
        # until MinJobAge, rather than not at all.
        argv = ["squeue", "-h", "-t", "all", "-j", str(self.job_id), "-o", "%T|%r"]
        code, out = await run_command(argv, log=log, env=None, timeout=COMMAND_TIMEOUT)
        line = out.strip().splitlines()[-1] if out.strip() else ""
        if code != 0 or "|" not in line:
            return "", ""  # "Invalid job id specified": over, and past MinJobAge
        state, _, reason = line.partition("|")
        return state.strip(), reason.strip()

    async def _watch(self, ctx: LaunchContext) -> None:
        said = ""
        running_since: float | None = None
        while not self._stopping:
            state, reason = await self._state()
            if self.job_id is None or self._stopping:  # stop() began meanwhile
                return
            if state in ENDED or not state:
                over = state or "no longer known to squeue"
                ctx.report(
                    LauncherStatus(
                        "failed",
                        f"slurm job {self.job_id} ended ({over})",
                        tail_of(self._output_file()),
                        str(self._output_file()),
                    )
                )
                return
            summary = f"slurm job {self.job_id} is {state}"
            if state == "PENDING" and reason and reason != "None":
                summary += f" ({reason})"
            if summary != said:
                said = summary
                kind: State = "running" if state == "RUNNING" else "pending"
                ctx.report(LauncherStatus(kind, summary, log=str(self._output_file())))
            # Polling, because Slurm has no notification a client can wait on; slower
            # once the job has run a while (engine losses are the hub's news then). A
            # plain sleep here once held every stop up to POLL_RUNNING seconds.
            now = asyncio.get_running_loop().time()
            if state == "RUNNING" and running_since is None:
                running_since = now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_poll_interval(state, running_since, now)):
                    await self._stopped.wait()

    async def stop(self) -> None:
        """``scancel`` the job and wait (up to ``CANCEL_WAIT`` s) until it is over."""
        self._stopping = True
        self._stopped.set()
        if self.job_id is None:
            return
        log = self._workdir / "sbatch.log"
        await run_command(["scancel", self.job_id], log=log, env=None, timeout=COMMAND_TIMEOUT)
        try:
            async with asyncio.timeout(CANCEL_WAIT):
                while True:
                    state, _ = await self._state()
                    if not state or state in ENDED:
                        break
                    await asyncio.sleep(0.2)  # COMPLETING: slurmd is still killing tasks
        except TimeoutError:
            pass
        self.job_id = None


def _poll_interval(state: str, running_since: float | None, now: float) -> float:
    """Seconds until the next ``squeue``: short while the job starts and for
    ``STARTING_GRACE`` seconds after it runs, then long (losses are the hub's news)."""
    if state != "RUNNING" or running_since is None or now - running_since < STARTING_GRACE:
        return POLL_STARTING
    return POLL_RUNNING


def _exit(code: int) -> str:
    return f"exit status {code}" if code >= 0 else f"killed by signal {-code}"
