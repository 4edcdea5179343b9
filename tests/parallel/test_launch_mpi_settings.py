"""The ``mpi`` launcher's Open MPI settings for a job on one node (``ONE_NODE_ENV``):
when they are set (guessed from ``mpi_args`` and the environment, or ``one_node=``),
and that the user's environment and ``env`` option win. Pure: ``command()`` only builds
the argv and environment (the real ranks are ``test_launch_mpi``'s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parallel.launchers import LaunchContext, LaunchError
from parallel.launchers._mpi import ALLOCATION_ENV, ONE_NODE_ENV, MPILauncher, guess_one_node


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
