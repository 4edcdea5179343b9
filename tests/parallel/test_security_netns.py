"""Security off loopback, on the wire: a cluster bound to a namespace's own address
(10.9.0.1), its client on another "host" (10.9.0.2, over a veth pair), and tcpdump on
that veth.

With Curve (the default off loopback) a token in the code and its reverse, which only the
engine's printed output holds, never cross the veth in clear; with
``--insecure-plaintext`` both do (which proves the capture sees the traffic). With
Curve, a plaintext client, a client with a wrong server key and one with a random
keypair each get nothing and are told "authentication failed" at once; without it, a
tampered buffer is refused by the buffers' HMAC. No secret is in any process's argv or
environment.

The fixture blackholes 10.9.0.0/16 in the root namespace before any namespace exists
(``_launch_fixtures.ssh_hosts``); those addresses are used only inside the namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _launch_fixtures import Hosts, all_gone, isolate_launch, kill_pid, processes_holding, ssh_hosts

from parallel.controller._controller import READY_LINE
from parallel.protocol._controller_info import ControllerInfo

pytestmark = pytest.mark.timeout(180)

CONTROLLER_IP = "10.9.0.1"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    if not os.path.exists("/usr/bin/tcpdump") and not os.path.exists("/usr/sbin/tcpdump"):
        pytest.skip("tcpdump is not installed (make sysdeps installs it)")
    with ssh_hosts(tmp_path_factory.mktemp("security"), count=1) as made:
        yield made


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_launch(monkeypatch, tmp_path)


def _veth(namespace: str) -> str:
    out = subprocess.run(
        ["ip", "-n", namespace, "-o", "link", "show", "type", "veth"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return out.split(":")[1].strip().split("@")[0]


def _read_line_with(process: subprocess.Popen[bytes], marker: bytes, timeout: float) -> bytes:
    """Lines of ``process``'s piped stream until one holds ``marker`` (or fail)."""
    stream = process.stdout if process.stdout is not None else process.stderr
    assert stream is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([stream], [], [], max(0.0, remaining))
        line = stream.readline() if ready else b""
        if not line:
            pytest.fail(f"no {marker!r} within {timeout:g} s: {seen[-2000:]!r}")
        seen += line
    return seen


@contextlib.contextmanager
def _capture(net: Hosts, pcap: Path) -> Iterator[None]:
    """tcpdump on the controller namespace's veth while the block runs (immediate mode:
    without it, packets still in the kernel's capture buffer when tcpdump is stopped
    are lost, and a short run's last second of traffic with them)."""
    argv = ["ip", "netns", "exec", net.controller, "tcpdump", "-i", _veth(net.controller)]
    argv += ["-n", "-U", "--immediate-mode", "-s", "0", "-w", str(pcap), "tcp"]
    dump = subprocess.Popen(argv, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _read_line_with(dump, b"listening on", 30)
        _capture_is_live(net, pcap)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(dump.pid, signal.SIGINT)  # tcpdump writes what it holds, then exits
        try:
            dump.wait(10)
        except subprocess.TimeoutExpired:
            kill_pid(dump.pid)
            dump.wait(10)
        if dump.stderr is not None:
            dump.stderr.close()


def _capture_is_live(net: Hosts, pcap: Path, timeout: float = 20.0) -> None:
    """Knock on a closed port of the controller's address from the other host until the
    capture holds a packet (its SYN and RST): a capture that sees nothing would make the
    Curve test pass for the wrong reason."""
    ((host, _),) = net.hosts.items()
    knock = f"import socket; socket.socket().connect_ex(('{CONTROLLER_IP}', 9))"
    deadline = time.monotonic() + timeout
    while pcap.stat().st_size <= 24:  # the pcap header alone: no packet yet
        if time.monotonic() > deadline:
            pytest.fail(f"tcpdump captured nothing within {timeout:g} s")
        subprocess.run(
            ["ip", "netns", "exec", host, sys.executable, "-c", knock], timeout=30, check=False
        )


def _run(net: Hosts, tmp_path: Path, *flags: str) -> tuple[dict[str, Any], bytes, str]:
    """A controller with one engine in the controller namespace bound to CONTROLLER_IP,
    the client scenario on the other host; the report, the capture, and which secrets
    some process's argv or environment held."""
    ((host, _),) = net.hosts.items()
    cluster_file = tmp_path / "cluster.json"
    pcap = tmp_path / "veth.pcap"
    token = "LOOMTOKEN" + secrets.token_hex(8).upper()
    argv = ["ip", "netns", "exec", net.controller, sys.executable, "-P", "-m"]
    argv += ["parallel.controller", "-n", "1", "--ip", CONTROLLER_IP, "--transport", "tcp"]
    argv += ["-f", str(cluster_file), *flags]
    with _capture(net, pcap):
        controller = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            _read_line_with(controller, READY_LINE.encode(), 60)
            info = ControllerInfo.read(cluster_file)
            secrets_held = [info.key]
            if info.curve is not None:
                secrets_held += [info.curve.server_secret, info.curve.client_secret]
            held = [p for s in secrets_held for p in processes_holding(s)]
            code = "import sys, _security_support as s; s.client_scenario(sys.argv[1])"
            spec = {"file": str(cluster_file), "token": token, "dir": str(tmp_path)}
            done = subprocess.run(
                ["ip", "netns", "exec", host, sys.executable, "-P", "-c", code, json.dumps(spec)],
                capture_output=True, text=True, timeout=150, check=False, env=dict(os.environ),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
            report["token"] = token
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(controller.pid, signal.SIGTERM)  # stops its engines
            try:
                controller.wait(20)
            except subprocess.TimeoutExpired:
                kill_pid(controller.pid)
                controller.wait(10)
            assert controller.stderr is not None
            assert controller.stdout is not None
            report_warning = controller.stderr.read().decode(errors="replace")
            controller.stdout.close()
            controller.stderr.close()
            for namespace in (net.controller, host):
                leftovers = net.pids_in(namespace) - set(net.sshd_pids.values())
                for pid in leftovers:
                    kill_pid(pid)
                assert all_gone(leftovers) == []
    report["warning"] = report_warning
    return report, pcap.read_bytes(), "; ".join(held)


def test_with_curve_nothing_readable_crosses_the_wire_and_strangers_are_told(
    net: Hosts, tmp_path: Path
) -> None:
    report, wire, held = _run(net, tmp_path)
    assert "error" not in report, report["error"]
    token = report["token"]
    assert report["result"] == len(token)
    assert report["stdout"] == token[::-1] + "\n"
    assert report["engine_address"] == CONTROLLER_IP
    assert b"CURVE" in wire  # the ZMTP greetings: the capture saw the cluster's traffic
    assert len(wire) > 5000
    assert token.encode() not in wire  # the code, pickled and sent to the engine
    assert token[::-1].encode() not in wire  # what it printed there
    assert held == ""  # no key in any argv or environment
    assert "--insecure-plaintext" not in report["warning"]
    assert "refused a connection from 10.9.0.2: key not allowed" in report["warning"]  # logged
    told = report["told"]
    for peer in ("plaintext", "wrong server key", "random keypair"):
        error = told[peer]["error"]
        assert error is not None, f"{peer} was let in"
        assert error.startswith("authentication failed"), (peer, error)
        assert told[peer]["seconds"] < 10, (peer, told[peer])  # told, not a timeout
    assert "not on the cluster's allow-list" in told["random keypair"]["error"]
    for peer in ("plaintext", "wrong server key", "random keypair"):  # engines are told too
        assert told[peer]["engine"].startswith("authentication failed"), (peer, told[peer])
        assert told[peer]["engine_seconds"] < 10, (peer, told[peer])
    # The engine's connection file: loom console --existing attaches with its client key,
    # and the file holds no server secret (no one can pose as the engine with it).
    assert report["attached"] == "ok"
    assert report["engine_file_can_serve"] is False
    assert report["null_hub_answered"] is False
    assert report["null_engine_answered"] is False


def test_insecure_plaintext_is_readable_on_the_wire_and_warned_of(
    net: Hosts, tmp_path: Path
) -> None:
    report, wire, held = _run(net, tmp_path, "--insecure-plaintext")
    assert "error" not in report, report["error"]
    token = report["token"]
    assert report["stdout"] == token[::-1] + "\n"
    assert b"NULL" in wire
    assert token.encode() in wire  # the same capture sees plaintext: the test is sound
    assert token[::-1].encode() in wire
    assert held == ""
    assert "--insecure-plaintext" in report["warning"]
    assert "unencrypted" in report["warning"]
    # Signed, yet not encrypted: a buffer changed after signing is refused, not unpickled.
    tampered = report["tampered"]
    assert tampered["answered"] is True
    assert tampered["content"]["ename"] == "SignatureError"
