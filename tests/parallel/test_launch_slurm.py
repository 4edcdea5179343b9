"""The ``slurm`` launcher against a real one-node Slurm (slurmctld + slurmd, started by
this module's fixture and stopped by pid): engines as one sbatch job with its options,
a pending job shown as pending, a rejected submission quoted, stop cancelling the job."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _launch_fixtures import (
    all_gone,
    cleaned_up,
    isolate_launch,
    kill_pid,
    secrets_exposed,
    slurm,
    slurm_steps,
)

from parallel import Cluster, ClusterUnavailable
from parallel.launchers import LaunchContext, LauncherStatus, _slurm

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with slurm(tmp_path_factory.mktemp("slurm")) as conf:
        yield conf


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, slurm_conf: Path) -> None:
    isolate_launch(monkeypatch, tmp_path)
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))


def _job(job_id: str) -> dict[str, str]:
    """``scontrol show job``'s fields."""
    out = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def _job_over(job_id: str, timeout: float = 30.0) -> bool:
    """Whether Slurm says the job is over within ``timeout`` s (its last task ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _job(job_id)["JobState"] not in ("RUNNING", "COMPLETING", "PENDING"):
            return True
        time.sleep(0.2)  # Slurm has no notification to wait on
    return False


def _job_id(cluster: Cluster) -> str:
    status = cluster.launcher_status
    assert status is not None
    return status.summary.split()[2]  # "slurm job 17 is RUNNING"


def test_engines_run_as_one_sbatch_job_with_its_options_and_stop_cancels_it() -> None:
    cluster = Cluster(
        n=3,
        engines="slurm",
        partition="debug",
        time="10:00",
        account="physics",
        sbatch_lines=["--comment=loom-test", "#SBATCH --nice=5"],
        env={"LOOM_SLURM_TEST": "it's here"},
    )
    with cleaned_up(cluster) as pids:
        rc = cluster.start_and_connect_sync(timeout=90)
        assert rc.ids == [0, 1, 2]
        pids |= {record.pid for record in rc._records.values()}
        job_id = _job_id(cluster)
        job = _job(job_id)
        assert (job["Partition"], job["TimeLimit"]) == ("debug", "00:10:00")
        assert job["Account"] == "physics"
        assert (job["Comment"], job["Nice"], job["NumTasks"]) == ("loom-test", "5", "3")
        assert job["JobState"] == "RUNNING"
        environ = rc[:].apply_sync(lambda: dict(__import__("os").environ))
        tasks = [(env["LOOM_SLURM_TEST"], env["SLURM_JOB_ID"]) for env in environ]
        assert tasks == [("it's here", job_id)] * 3
        # One node: no srun step; the batch script forked the three engines.
        assert [env.get("SLURM_STEP_ID") for env in environ] == [None] * 3
        parents = set(rc[:].apply_sync(lambda: __import__("os").getppid()))
        assert len(parents) == 1
        pids |= parents
        assert secrets_exposed(rc.info) == []  # the job script and its tasks got a path
        cluster.stop_cluster_sync()
        assert all_gone(pids) == []
        assert _job(job_id)["JobState"] in ("CANCELLED", "COMPLETED")


def test_a_job_on_several_nodes_runs_one_srun_task_per_engine() -> None:
    # The script's own test: SLURM_JOB_NUM_NODES, set by Slurm in the batch script's
    # environment, is overridden by the env option's export (this Slurm has one node).
    cluster = Cluster(n=2, engines="slurm", env={"SLURM_JOB_NUM_NODES": "2"})
    with cleaned_up(cluster) as pids:
        rc = cluster.start_and_connect_sync(timeout=90)
        pids |= {record.pid for record in rc._records.values()}
        environ = rc[:].apply_sync(lambda: dict(__import__("os").environ))
        assert sorted((env["SLURM_STEP_ID"], env["SLURM_PROCID"]) for env in environ) == [
            ("0", "0"),
            ("0", "1"),
        ]
        cluster.stop_cluster_sync()
        assert all_gone(pids) == []


def test_the_controller_can_run_inside_the_batch_job() -> None:
    cluster = Cluster(n=2, engines="slurm", controller="job")
    with cleaned_up(cluster) as pids:
        rc = cluster.start_and_connect_sync(timeout=90)
        assert rc.ids == [0, 1]
        job_id = _job_id(cluster)
        controller = rc.info.pid  # the cluster file's: the controller the job runs
        pids |= {controller} | {record.pid for record in rc._records.values()}
        assert (
            f"SLURM_JOB_ID={job_id}\0".encode() in Path(f"/proc/{controller}/environ").read_bytes()
        )
        environ = rc[:].apply_sync(lambda: dict(__import__("os").environ))
        assert [(env["SLURM_JOB_ID"], env["SLURM_STEP_ID"]) for env in environ] == [
            (job_id, "0")
        ] * 2
        assert secrets_exposed(rc.info) == []  # srun and its tasks got the file's path
        cluster.stop_cluster_sync()
        assert all_gone(pids) == []
        assert _job(job_id)["JobState"] in ("CANCELLED", "COMPLETED")


def test_a_pending_job_with_the_controller_inside_is_shown_as_pending() -> None:
    cluster = Cluster(n=1, engines="slurm", controller="job", partition="closed")
    started = time.monotonic()
    with cleaned_up(cluster), pytest.raises(ClusterUnavailable) as caught:
        cluster.start_and_connect_sync(timeout=4)
    assert time.monotonic() - started < 30
    message = str(caught.value)
    found = re.search(r"the slurm launcher: slurm job (\d+) is PENDING \(PartitionDown\)", message)
    assert found is not None, message
    assert _job(found.group(1))["JobState"] == "CANCELLED"  # stopping the start cancelled it


def test_a_controller_killed_with_sigkill_takes_its_engines_and_job_along() -> None:
    cluster = Cluster(n=2, engines="slurm")
    with cleaned_up(cluster) as pids:
        rc = cluster.start_and_connect_sync(timeout=90)
        job_id = _job_id(cluster)
        engines = {record.pid for record in rc._records.values()}
        pids |= engines
        # Serving (an engine watches its controller from its hand-over, which comes
        # after its registration), then killed.
        assert len(rc[:].apply_sync(lambda: "serving")) == 2
        assert cluster._process is not None
        kill_pid(cluster._process.pid)  # no scancel: the engines watch their controller
        assert all_gone(engines) == []
        assert _job_over(job_id)


@dataclass
class _WatchedContext(LaunchContext):
    """A launch context that tells when the launcher first reports ``running``."""

    running: asyncio.Event = field(default_factory=asyncio.Event)
    failed: asyncio.Event = field(default_factory=asyncio.Event)

    def report(self, status: LauncherStatus) -> None:
        super().report(status)
        if status.state == "running":
            self.running.set()
        if status.state == "failed":
            self.failed.set()


def test_stop_wakes_the_job_watcher_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The watcher of a running job waits POLL_RUNNING between two squeue, and the
    # controller's task group waits for the watcher: a plain sleep there held every
    # stop for up to 5 s (here it would be an hour, past the timeout below).
    monkeypatch.setattr(_slurm, "POLL_RUNNING", 3600.0)

    async def start_then_stop() -> str:
        launcher = _slurm.SlurmLauncher()
        launcher.job_command = ["/bin/sleep", "600"]  # a job that runs until cancelled
        async with asyncio.timeout(60), asyncio.TaskGroup() as tg:
            ctx = _WatchedContext(tmp_path / "unused.json", tg, workdir=tmp_path)
            await launcher.start(1, ctx)
            job_id = launcher.job_id
            assert job_id is not None
            await ctx.running.wait()
            await launcher.stop()
        return job_id

    job_id = asyncio.run(start_then_stop())
    assert _job(job_id)["JobState"] == "CANCELLED"


def test_a_job_that_ends_soon_after_it_runs_is_reported_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Engines that fail at once (a bad setting) end the job in its first seconds; the
    # watcher polls as while starting for STARTING_GRACE s after the job runs, so the
    # waiting start hears it then (before: after POLL_RUNNING, here an hour).
    monkeypatch.setattr(_slurm, "POLL_RUNNING", 3600.0)

    async def start_until_failed() -> LauncherStatus:
        launcher = _slurm.SlurmLauncher()
        launcher.job_command = ["/bin/sh", "-c", "sleep 3; echo 'engines failed'; exit 3"]
        async with asyncio.timeout(60), asyncio.TaskGroup() as tg:
            ctx = _WatchedContext(tmp_path / "unused.json", tg, workdir=tmp_path)
            await launcher.start(1, ctx)
            await ctx.running.wait()
            await ctx.failed.wait()
            await launcher.stop()
        assert ctx.status is not None
        return ctx.status

    status = asyncio.run(start_until_failed())
    assert re.fullmatch(r"slurm job \d+ ended \(FAILED\)", status.summary), status.summary
    assert "engines failed" in status.output


def test_a_pending_job_is_shown_as_pending_and_stop_cancels_it() -> None:
    cluster = Cluster(n=2, engines="slurm", partition="closed")  # a partition that is DOWN
    with cleaned_up(cluster):
        cluster.start_cluster_sync(timeout=60)
        started = time.monotonic()
        with pytest.raises(ClusterUnavailable) as caught:
            cluster.wait_for_engines(timeout=3)
        assert time.monotonic() - started < 15
        message = str(caught.value)
        assert "0 of 2 engines registered (none is up): the wait ended after 3 s" in message
        job_id = _job_id(cluster)
        assert f"the slurm launcher: slurm job {job_id} is PENDING (PartitionDown)" in message
        status = cluster.launcher_status
        assert status is not None
        assert status.state == "pending"
        cluster.stop_cluster_sync()
        assert _job(job_id)["JobState"] == "CANCELLED"


def test_a_rejected_submission_ends_the_start_with_what_sbatch_printed() -> None:
    cluster = Cluster(n=2, engines="slurm", partition="nosuchpartition")
    started = time.monotonic()
    with cleaned_up(cluster), pytest.raises(ClusterUnavailable) as caught:
        cluster.start_and_connect_sync(timeout=90)
    assert time.monotonic() - started < 45
    message = str(caught.value)
    assert "the slurm launcher: sbatch failed (exit status 1)" in message
    assert "invalid partition specified: nosuchpartition" in message


def test_a_job_whose_engines_die_is_reported_failed_with_its_output(slurm_conf: Path) -> None:
    cluster = Cluster(n=2, engines="slurm", python="/bin/false")
    with cleaned_up(cluster), pytest.raises(ClusterUnavailable) as caught:
        cluster.start_and_connect_sync(timeout=90)
    message = str(caught.value)
    assert "the launcher failed" in message
    assert "ended (FAILED)" in message or "ended (no longer known" in message
    left = slurm_steps(slurm_conf, tasks_only=True)
    assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]


def test_a_one_node_job_whose_forked_engines_all_fail_is_failed_with_what_they_printed(
    slurm_conf: Path,
) -> None:
    """The fork server (the batch script, on one node) starts, forks, and every engine
    fails on a bad setting: the job must end FAILED (its fork server once exited 0: the
    job read COMPLETED), and the start says so with the engines' own words."""
    cluster = Cluster(n=2, engines="slurm", env={"LOOM_ENGINE_RESOURCES": "gpu=lots"})
    started = time.monotonic()
    with cleaned_up(cluster), pytest.raises(ClusterUnavailable) as caught:
        cluster.start_and_connect_sync(timeout=90)
    assert time.monotonic() - started < 60  # the watcher's news, not the timeout
    message = str(caught.value)
    assert "0 of 2 engines registered (none is up): the launcher failed" in message
    job = re.search(r"slurm job (\d+) ended \((\w+)\)", message)
    assert job is not None, message
    assert job.group(2) == "FAILED", message
    said = "loom engine: LOOM_ENGINE_RESOURCES: resource gpu: 'lots' is not an amount"
    assert message.count(said) == 2, message  # each engine's line
    assert _job(job.group(1))["ExitCode"] == "2:0"  # the engines' status, not a signal
    assert slurm_steps(slurm_conf, tasks_only=True) == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"time": "an hour"}, "time must be a Slurm time"),
        ({"partition": ""}, "partition must be a non-empty string"),
        ({"sbatch_lines": ["--mem=1G\nrm -rf /"]}, "is not one option line"),
        ({"env": {"NOT A NAME": "x"}}, "is not a variable name"),
        ({"controller": "head-node"}, "controller must be 'local' or 'job'"),
        ({"srun": "yes"}, "srun must be true or false"),
    ],
)
def test_bad_slurm_options_are_one_line(options: dict[str, object], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        Cluster(n=1, engines="slurm", **options)


@pytest.mark.parametrize(
    ("options", "forks"),
    [
        ({}, True),
        ({"srun": True}, False),
        ({"sbatch_lines": ["--gpus-per-task=1"]}, False),  # per-task resources: tasks
    ],
)
def test_a_one_node_job_forks_its_engines_unless_tasks_are_asked_for(
    options: dict[str, object], forks: bool, tmp_path: Path
) -> None:
    launcher = _slurm.SlurmLauncher(**options)  # type: ignore[arg-type]
    ctx = LaunchContext(tmp_path / "c.json", asyncio.TaskGroup(), workdir=tmp_path)
    script = launcher.script(3, ctx)
    assert script.rstrip().endswith(
        f"exec srun {launcher.python} -P -m "
        f"parallel.launchers._node_engine -f {tmp_path / 'c.json'}"
    )
    assert ("--fork 3" in script) is forks
