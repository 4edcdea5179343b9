"""A real network partition (issue 13): an engine in another network namespace, its link
taken down, then up again (root only; CI runs as root).

The namespaces come from ``_launch_fixtures.ssh_hosts`` (the root namespace blackholes
their range first: no packet leaves the machine). The controller and a client run in
namespace A (``_partition_scenario``), one engine in namespace B. With the link down
nothing closes, so only the heartbeat can tell: the engine is declared lost within the
configured timeout (2 s here). With the link up again the engine, which kept running,
pings the hub, is told it is unknown, and registers again: same id, same process, its
namespace intact. A load-balanced task (one retry) running through the partition runs
twice, lost with the engine and retried on it once it is back, and is answered once.
Last, the engine is SIGKILLed: the hub's connection watch sees it exit at once. All of it
under CurveZMQ (the default off loopback).

Before the fix, an engine started by ``_node_engine`` never reached the hub through its
hub link (it dialled its own address), so it never heard "register again".
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _launch_fixtures import Hosts, isolate_launch, kill_pid, need_root, ssh_hosts

pytestmark = pytest.mark.timeout(180)

HEARTBEAT_TIMEOUT = 2.0
#: Seconds the engine gets to register again once the link is back up.
HEAL_TIMEOUT = 20.0


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Hosts]:
    need_root("network namespaces")
    isolate_launch(monkeypatch, tmp_path)
    with ssh_hosts(tmp_path, count=1) as made:
        yield made


def _read(proc: subprocess.Popen[str], timeout: float, log: Path) -> dict[str, Any]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    assert line, f"the scenario said nothing within {timeout} s: {log.read_text()[-3000:]}"
    message: dict[str, Any] = json.loads(line)
    assert "error" not in message, message["error"]
    return message


def _send(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _link(namespace: str, state: str) -> None:
    device = subprocess.run(
        ["ip", "-n", namespace, "-o", "link", "show", "type", "veth"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.split(":")[1].strip().split("@")[0]  # fmt: skip
    subprocess.run(["ip", "-n", namespace, "link", "set", device, state], check=True, timeout=30)


def test_a_partitioned_engine_is_lost_in_time_and_registers_again_when_it_heals(
    hosts: Hosts, tmp_path: Path
) -> None:
    ((node, _),) = hosts.hosts.items()
    options = {"ip": "10.9.0.1", "node": node, "hb": HEARTBEAT_TIMEOUT, "heal": HEAL_TIMEOUT}
    engine_log = tmp_path / "engine.log"
    spec = json.dumps({**options, "engine_log": str(engine_log), "held": str(tmp_path)})
    code = "import sys, _partition_scenario as p; p.main(sys.argv[1])"
    env = dict(os.environ)
    here = str(Path(__file__).parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    argv = ["ip", "netns", "exec", hosts.controller, sys.executable, "-P", "-c", code, spec]
    log = tmp_path / "scenario.log"
    with open(log, "w") as err, subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
        start_new_session=True,
    ) as proc:  # fmt: skip
        try:
            ready = _read(proc, 90, log)["ready"]
            assert ready["started"], "the held task never started"
            _link(node, "down")
            _send(proc, "down")
            lost = _read(proc, 90, log)["lost"]
            assert lost["seen"], "the partitioned engine was never declared lost"
            assert f"silent for {HEARTBEAT_TIMEOUT:g} s" in lost["reason"]
            assert lost["seconds"] < HEARTBEAT_TIMEOUT + 5  # within the timeout, and a tick
            _link(node, "up")
            _send(proc, "up")
            back = _read(proc, 90, log)["back"]
            assert back["seen"], (
                f"the engine did not register again within {HEAL_TIMEOUT:g} s of the link"
                f" coming back (still running: {back['engine_alive']}; TCP connections"
                f" in its namespace: {back['engine_connections']}); its log:"
                f" {engine_log.read_text()[-3000:]}"
            )
            assert (back["id"], back["pid"], back["kept"]) == (ready["id"], ready["pid"], 42)
            task = _read(proc, 90, log)["task"]
            print(f"lost: {lost}; back: {back}; the held task: {task}")
            # Run twice (lost with its engine, retried there once it was back), answered once.
            assert task == {"pid": ready["pid"], "runs": 2, "delivered": 1}
            exited = _read(proc, 90, log)["exited"]
            print(f"exited: {exited}")
            # The hub's connection watch, under Curve: an exit is seen at once, not after
            # the heartbeat timeout.
            assert exited["seen"], exited
            assert "connection closed" in exited["reason"], exited
            assert exited["seconds"] < HEARTBEAT_TIMEOUT
        finally:
            kill_pid(proc.pid)
