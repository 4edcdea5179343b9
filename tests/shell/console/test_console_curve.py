"""``loom --existing FILE`` attaches to an ipykernel serving CurveZMQ (issue 12).

jupyter_client's KernelManager with ``transport_encryption="required"`` starts the real
ipykernel (the ``python3`` kernelspec declares ``supported_encryption``) and writes the
Curve keys into its connection file; Loom's console, in plain mode (pipes), reads them
from that file and runs code. The same file without its keys is refused at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from jupyter_client.manager import KernelManager
from test_console_e2e import console_env

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not zmq.has("curve"), reason="libzmq was built without CurveZMQ"),
]


@pytest.fixture(scope="module")
def encrypted_ipykernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The connection file of a running ipykernel that serves Curve."""
    km = KernelManager(kernel_name="python3", transport_encryption="required")
    km.connection_file = str(tmp_path_factory.mktemp("curve") / "kernel-curve.json")
    km.start_kernel()
    try:
        # The console probes the heartbeat port first: wait until the kernel listens.
        kc = km.blocking_client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=30)
        finally:
            kc.stop_channels()
        yield Path(km.connection_file)
    finally:
        km.shutdown_kernel(now=True)


def loom_plain(
    tmp_path: Path, *args: str, stdin: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``loom ARGS`` with pipes (plain mode); the result and the seconds it took."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-P", "-m", "shell", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=console_env(tmp_path),
        timeout=60,
        check=False,
    )
    return done, time.monotonic() - started


def test_the_console_runs_code_on_an_encrypted_ipykernel(
    encrypted_ipykernel: Path, tmp_path: Path
) -> None:
    data = json.loads(encrypted_ipykernel.read_text())
    assert len(data["curve_publickey"]) == 40
    done, _ = loom_plain(
        tmp_path, "--existing", str(encrypted_ipykernel), stdin="import ipykernel\nprint(6 * 7)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "42\n"


def test_the_console_without_the_keys_is_refused_at_once(
    encrypted_ipykernel: Path, tmp_path: Path
) -> None:
    data = json.loads(encrypted_ipykernel.read_text())
    for field in ("curve_publickey", "curve_secretkey"):
        data.pop(field)
    plain = tmp_path / "kernel-plain.json"
    plain.write_text(json.dumps(data))
    plain.chmod(0o600)
    done, took = loom_plain(tmp_path, "--existing", str(plain), stdin="print(6 * 7)\n")
    assert done.returncode != 0
    assert "42" not in done.stdout
    assert "loom: authentication failed: " in done.stderr  # libzmq's event varies by timing
    assert "plaintext" in done.stderr
    assert took < 5, "refused at the handshake, not after a timeout"
