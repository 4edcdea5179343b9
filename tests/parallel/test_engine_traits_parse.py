"""Labels and resources as users type them (``--label``, ``--resources gpu=1,mem=64G``,
``Cluster(labels=, resources=)``, launcher options) and as peers send them; in process."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from kernel.protocol import MalformedMessage
from parallel.launchers import LaunchContext, LaunchError
from parallel.launchers._mpi import MPILauncher
from parallel.launchers._ssh import SSHLauncher
from parallel.protocol._engine_traits import (
    LABELS_ENV,
    RESOURCES_ENV,
    add_traits_arguments,
    format_resources,
    labels_from,
    parse_resources,
    registration_traits,
    resources_from,
    set_traits_env,
)
from parallel.protocol._hub_messages import EngineRecord

KI, GI = 1024.0, float(1 << 30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("gpu=1", {"gpu": 1.0}),
        (" gpu = 2 , mem=64G ", {"gpu": 2.0, "mem": 64 * GI}),
        (
            "mem=64GiB,swap=1Gi,x=3K,y=2M,z=1T",
            {"mem": 64 * GI, "swap": GI, "x": 3 * KI} | {"y": 2 * KI * KI, "z": 1024 * GI},
        ),
        (
            "disk=2GB,net=5kB,f=0.5,e=1.5e3,b=7B",
            {"disk": 2e9, "net": 5e3, "f": 0.5} | {"e": 1500.0, "b": 7.0},
        ),
        ("cpu.slots=4,my_res-2=0", {"cpu.slots": 4.0, "my_res-2": 0.0}),
    ],
)
def test_resources_parse_with_units(text: str, expected: dict[str, float]) -> None:
    assert parse_resources(text) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("gpu", "resources: 'gpu' is not NAME=AMOUNT (e.g. gpu=1,mem=64G)"),
        ("gpu=", "resource gpu: '' is not an amount (e.g. 1, 0.5, 64G)"),
        ("gpu=x", "resource gpu: 'x' is not an amount (e.g. 1, 0.5, 64G)"),
        ("gpu=-1", "resource gpu: '-1' is not an amount (e.g. 1, 0.5, 64G)"),
        ("mem=64Q", "resource mem: '64Q' is not an amount (e.g. 1, 0.5, 64G)"),
        ("mem=1e999", "resource mem: '1e999' must be a finite amount of 0 or more"),
        ("1gpu=1", "resource '1gpu' is not a name (a letter or _, then letters, digits, _ . -)"),
        ("gpu=1,gpu=2", "resources: 'gpu' is named twice"),
    ],
)
def test_bad_resources_are_one_line_naming_the_bad_part(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=r".") as caught:
        parse_resources(text)
    assert str(caught.value) == error


def test_amounts_print_back_in_the_unit_that_reads_best_and_parse_to_the_same() -> None:
    resources = {"mem": 64 * GI, "disk": 2e9, "gpu": 1.0, "f": 0.5, "x": 1500.0, "k": 2 * KI}
    text = format_resources(resources)
    assert text == "disk=2GB,f=0.5,gpu=1,k=2K,mem=64G,x=1500"
    assert parse_resources(text) == resources


def test_mappings_labels_and_what_python_callers_pass() -> None:
    assert resources_from({"gpu": 1, "mem": "16G"}) == {"gpu": 1.0, "mem": 16 * GI}
    assert resources_from(None) == {}
    assert labels_from(["a", "b,c"]) == {"a", "b", "c"}
    assert labels_from("gpu") == {"gpu"}
    assert labels_from(None) == frozenset()
    for bad, error in [
        ({"gpu": True}, "resource gpu: True is not an amount (e.g. 1, 0.5, 64G)"),
        ([("gpu", 1)], "resources must be a dict like {'gpu': 1}, not [('gpu', 1)]"),
    ]:
        with pytest.raises(ValueError, match=r".") as caught:
            resources_from(bad)
        assert str(caught.value) == error
    with pytest.raises(ValueError, match=r"^label 'a b' is not a name"):
        labels_from(["a b"])
    with pytest.raises(ValueError, match=r"^labels must be a list of names, not 3$"):
        labels_from(3)


def test_command_line_options_become_the_engines_environment() -> None:
    parser = argparse.ArgumentParser()
    add_traits_arguments(parser)
    args = parser.parse_args(["--label", "bigmem", "--label", "x,y", "--resources", "gpu=1"])
    env: dict[str, str] = {RESOURCES_ENV: "old=1"}
    set_traits_env(env, args.label, args.resources)
    assert env == {LABELS_ENV: "bigmem,x,y", RESOURCES_ENV: "gpu=1"}
    assert registration_traits(env) == {"labels": ["bigmem", "x", "y"], "resources": {"gpu": 1.0}}
    assert registration_traits({}) == {"labels": [], "resources": {}}
    with pytest.raises(ValueError, match=r"^LOOM_ENGINE_RESOURCES: resource gpu: 'x' is not"):
        set_traits_env({RESOURCES_ENV: "gpu=x"}, [], None)


def _record(**extra: Any) -> dict[str, Any]:
    ports = {f"{ch}_port": 1000 + i for i, ch in enumerate(("shell", "iopub", "stdin", "control"))}
    ports["hb_port"] = 2000
    return {"id": 0, "uuid": "u", "pid": 1, "address": "127.0.0.1", "ports": ports, **extra}


def test_engine_records_carry_them_and_older_peers_without_them_still_work() -> None:
    old = EngineRecord.from_content(_record())
    assert (old.labels, old.resources) == ((), {})
    new = EngineRecord.from_content(_record(labels=["x", "bigmem"], resources={"gpu": 1}))
    assert (new.labels, new.resources) == (("bigmem", "x"), {"gpu": 1.0})
    content = new.to_content()
    assert (content["labels"], content["resources"]) == (["bigmem", "x"], {"gpu": 1.0})
    assert EngineRecord.from_content(content) == new
    with pytest.raises(MalformedMessage, match=r"^resource gpu: -1 must be a finite amount"):
        EngineRecord.from_content(_record(resources={"gpu": -1}))
    with pytest.raises(MalformedMessage, match=r"^labels must be a list of names"):
        EngineRecord.from_content(_record(labels={"a": 1}))


def test_ssh_hosts_add_their_own_labels_and_resources_to_the_clusters() -> None:
    launcher = SSHLauncher(
        hosts={"cpu1": 2, "gpu1": 1},
        host_labels={"gpu1": ["gpu"]},
        host_resources={"gpu1": "gpu=2,mem=64G"},
        env={"OMP_NUM_THREADS": "1"},
    )
    here = {LABELS_ENV: "site", RESOURCES_ENV: "mem=16G"}
    assert launcher.host_env("cpu1", here) == {
        LABELS_ENV: "site",
        RESOURCES_ENV: "mem=16G",
        "OMP_NUM_THREADS": "1",
    }
    assert launcher.host_env("gpu1", here) == {
        LABELS_ENV: "gpu,site",
        RESOURCES_ENV: "gpu=2,mem=64G",
        "OMP_NUM_THREADS": "1",
    }
    assert launcher.host_env("cpu1", {}) == {"OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"host_labels": {"gpu2": ["gpu"]}}, "host_labels: 'gpu2' is not one of hosts ['gpu1']"),
        ({"host_resources": {"gpu1": "gpu"}}, "gpu1: resources: 'gpu' is not NAME=AMOUNT"),
        ({"host_labels": ["gpu"]}, "host_labels must map host names to their labels"),
    ],
)
def test_bad_ssh_host_traits_are_one_line(options: dict[str, Any], error: str) -> None:
    with pytest.raises(LaunchError, match=r".") as caught:
        SSHLauncher(hosts={"gpu1": 1}, **options)
    assert str(caught.value).startswith(error)


def test_mpiexec_exports_them_to_ranks_on_other_nodes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ctx = LaunchContext(cluster_file=tmp_path / "c.json", tg=None)  # type: ignore[arg-type]
    launcher = MPILauncher(mpiexec="sh")  # found on PATH; command() only builds the argv
    monkeypatch.delenv(LABELS_ENV, raising=False)
    monkeypatch.delenv(RESOURCES_ENV, raising=False)
    argv, _ = launcher.command(2, ctx)
    assert "-x" not in argv
    monkeypatch.setenv(LABELS_ENV, "gpu")
    monkeypatch.setenv(RESOURCES_ENV, "gpu=1")
    argv, env = launcher.command(2, ctx)
    assert argv[3:7] == ["-x", LABELS_ENV, "-x", RESOURCES_ENV]
    assert env[LABELS_ENV] == "gpu"
