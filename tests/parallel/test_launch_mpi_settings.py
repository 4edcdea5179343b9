"""The ``mpi`` launcher's Open MPI settings for a job on one node (``ONE_NODE_ENV``):
when they are set (guessed from ``mpi_args`` and the environment, or ``one_node=``),
and that the user's environment and ``env`` option win. Pure: ``command()`` only builds
the argv and environment (the real ranks are ``test_launch_mpi``'s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parallel.launchers import LaunchContext, LaunchError
from parallel.launchers._command import STOP_GRACE
from parallel.launchers._mpi import (
    ALLOCATION_ENV,
    ONE_NODE_ENV,
    RANK_STOP_GRACE,
    SIGKILL_TIMEOUT_ENV,
    MPILauncher,
    guess_one_node,
)


@pytest.fixture(autouse=True)
def _no_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*ALLOCATION_ENV, *ONE_NODE_ENV):
        monkeypatch.delenv(name, raising=False)


def command_env(tmp_path: Path, **options: object) -> dict[str, str]:
    ctx = LaunchContext(cluster_file=tmp_path / "c.json", tg=None)  # type: ignore[arg-type]
    _, env = MPILauncher(mpiexec="sh", **options).command(2, ctx)  # type: ignore[arg-type]
    return dict(env)


@pytest.mark.parametrize(
    ("mpi_args", "env", "one_node"),
    [
        ([], {}, True),
        (["--mca", "btl", "tcp,self", "-v"], {}, True),
        (["--host", "a,b"], {}, False),
        (["--host=a,b"], {}, False),
        (["-H", "a"], {}, False),
        (["--hostfile", "hosts"], {}, False),
        (["-machinefile", "hosts"], {}, False),
        ([], {"SLURM_JOB_ID": "17"}, False),
        ([], {"PBS_NODEFILE": "/var/spool/nodes"}, False),
        ([], {"SLURM_JOB_ID": ""}, True),
    ],
)
def test_one_node_is_guessed_from_host_options_and_batch_allocations(
    mpi_args: list[str], env: dict[str, str], one_node: bool
) -> None:
    assert guess_one_node(mpi_args, env) is one_node


def test_a_one_node_job_gets_the_fast_start_settings(tmp_path: Path) -> None:
    env = command_env(tmp_path)
    assert {name: env[name] for name in ONE_NODE_ENV} == ONE_NODE_ENV
    assert env["OMPI_MCA_pml"] == "ob1"


def test_a_job_on_other_hosts_keeps_open_mpis_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not set(ONE_NODE_ENV) & set(command_env(tmp_path, mpi_args=["--host", "a,b"]))
    assert not set(ONE_NODE_ENV) & set(command_env(tmp_path, one_node=False))
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    assert not set(ONE_NODE_ENV) & set(command_env(tmp_path))
    assert command_env(tmp_path, one_node=True)["OMPI_MCA_pml"] == "ob1"  # said, not guessed


def test_the_users_settings_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMPI_MCA_pml", "ucx")
    env = command_env(tmp_path, env={"HWLOC_COMPONENTS": "linux"})
    assert env["OMPI_MCA_pml"] == "ucx"
    assert env["HWLOC_COMPONENTS"] == "linux"
    # A batch allocation named in the env option counts too.
    env = command_env(tmp_path, env={"SLURM_JOB_ID": "17"})
    assert "HWLOC_COMPONENTS" not in env


def test_one_node_must_be_a_bool_or_none() -> None:
    with pytest.raises(LaunchError, match="one_node must be True, False or None, not 'yes'"):
        MPILauncher(one_node="yes")  # type: ignore[arg-type]


def command_argv(tmp_path: Path, n: int = 4, **options: object) -> list[str]:
    ctx = LaunchContext(cluster_file=tmp_path / "c.json", tg=None)  # type: ignore[arg-type]
    argv, _ = MPILauncher(mpiexec="sh", **options).command(n, ctx)  # type: ignore[arg-type]
    return argv[1:]  # after mpiexec's own path


def test_hosts_become_one_host_list_and_the_engine_count(tmp_path: Path) -> None:
    launcher = MPILauncher(hosts={"node1": 2, "node2": 3})
    assert launcher.default_count() == 5
    assert MPILauncher(hosts=["node1", "node2"]).default_count() == 2
    assert MPILauncher().default_count() is None  # one per local CPU
    argv = command_argv(tmp_path, hosts={"node1": 2, "node2": 3}, mpi_args=["-v"])
    assert argv[:5] == ["-n", "4", "--host", "node1:2,node2:3", "-v"]
    # Other hosts: Open MPI's defaults, not the one-node settings.
    env = command_env(tmp_path, hosts={"node1": 2})
    assert not set(ONE_NODE_ENV) & set(env)


def test_the_env_option_reaches_ranks_on_other_nodes(tmp_path: Path) -> None:
    # Open MPI gives ranks on other nodes only the variables -x names.
    argv = command_argv(tmp_path, env={"OMP_NUM_THREADS": "1", "A": "b"})
    assert argv[argv.index("-x") : argv.index("-x") + 4] == ["-x", "OMP_NUM_THREADS", "-x", "A"]
    assert "-x" not in command_argv(tmp_path)


@pytest.mark.parametrize(
    ("hosts", "mpi_args", "expected"),
    [
        ("node1", [], "hosts must map host names to engine counts, not 'node1'"),
        ({}, [], "hosts is empty"),
        ({"node1,node2": 2}, [], "hosts: 'node1,node2' is not a host name"),
        ({"-H": 2}, [], "hosts: '-H' is not a host name"),
        ({"node1": 0}, [], "hosts: 'node1' needs a positive engine count, not 0"),
        ({"node1": True}, [], "needs a positive engine count, not True"),
        ({"node1": 2}, ["--host", "node2"], "name the hosts in hosts= or in mpi_args, not in both"),
    ],
)
def test_bad_hosts_are_one_line(hosts: object, mpi_args: list[str], expected: str) -> None:
    with pytest.raises(LaunchError, match=expected):
        MPILauncher(hosts=hosts, mpi_args=mpi_args)  # type: ignore[arg-type]


def test_ranks_get_time_to_clean_up_when_stopped_unless_the_user_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SIGKILL_TIMEOUT_ENV, raising=False)
    assert command_env(tmp_path)[SIGKILL_TIMEOUT_ENV] == str(RANK_STOP_GRACE)
    assert RANK_STOP_GRACE < STOP_GRACE  # mpiexec itself is SIGKILLed after STOP_GRACE
    assert command_env(tmp_path, env={SIGKILL_TIMEOUT_ENV: "9"})[SIGKILL_TIMEOUT_ENV] == "9"
    monkeypatch.setenv(SIGKILL_TIMEOUT_ENV, "2")
    assert command_env(tmp_path)[SIGKILL_TIMEOUT_ENV] == "2"
