"""CurveZMQ between Jupyter's tools and Loom (issue 12, "Kernels too").

jupyter_client's KernelManager with ``transport_encryption="required"`` starts Loom's
kernel from the ``loom`` kernelspec (which must declare ``supported_encryption``) and
executes code over Curve; a NULL (plaintext) client of the same kernel gets nothing.
After jupyter_client's restart (same file, same keys) the kernel refuses a message
captured before it (kernel/protocol/_freshness.py); ipykernel would run it again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from queue import Empty

import pytest
import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from kernel import connect_client
from kernel.protocol import ConnectionInfo
from kernel.server._app import plaintext_warning

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not zmq.has("curve"), reason="libzmq was built without CurveZMQ"),
]


def execute(kc: BlockingKernelClient, code: str) -> str:
    """Run ``code`` and return what it printed (the reply must be ok)."""
    out: list[str] = []
    reply = kc.execute_interactive(
        code,
        timeout=20,
        output_hook=lambda m: out.append(m["content"].get("text", "")),
    )
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)


@pytest.fixture(scope="module")
def encrypted_loom() -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    km = KernelManager(kernel_name="loom", transport_encryption="required")
    km.start_kernel()
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_the_loom_kernelspec_declares_curve(loom_kernelspec: Path) -> None:
    spec = json.loads((loom_kernelspec / "kernel.json").read_text())
    assert spec["metadata"]["supported_encryption"] == ["curve"]


def test_jupyter_client_drives_loom_over_curve(
    encrypted_loom: tuple[KernelManager, BlockingKernelClient],
) -> None:
    km, kc = encrypted_loom
    # jupyter_client wrote Curve keys into the file it gave the kernel.
    data = json.loads(Path(km.connection_file).read_text())
    assert len(data["curve_publickey"]) == 40
    assert len(data["curve_secretkey"]) == 40
    assert execute(kc, "print(6 * 7)") == "42\n"


def test_a_plaintext_client_of_the_encrypted_kernel_gets_no_answer(
    encrypted_loom: tuple[KernelManager, BlockingKernelClient],
) -> None:
    km, _ = encrypted_loom
    info = json.loads(Path(km.connection_file).read_text())
    # The same file without its Curve keys: a NULL-mechanism client with the right HMAC key.
    for field in ("curve_publickey", "curve_secretkey"):
        info.pop(field)
    plain = BlockingKernelClient()
    plain.load_connection_info(info)
    plain.start_channels()
    try:
        plain.kernel_info()
        with pytest.raises(Empty):  # the NULL handshake is refused: no reply ever comes
            plain.get_shell_msg(timeout=2)
    finally:
        plain.stop_channels()


def test_a_curve_kernel_does_not_warn_of_plaintext(
    encrypted_loom: tuple[KernelManager, BlockingKernelClient],
) -> None:
    km, _ = encrypted_loom
    info = ConnectionInfo.read(Path(km.connection_file))
    assert info.curve is not None
    assert plaintext_warning(info) is None
    assert plaintext_warning(dataclasses.replace(info, curve=None)) is not None


def test_a_client_with_a_keypair_of_its_own_is_admitted(
    encrypted_loom: tuple[KernelManager, BlockingKernelClient],
) -> None:
    # The file names no client key, so the kernel admits any Curve client: Loom's
    # KernelClient presents a random keypair of its own, not the file's.
    km, _ = encrypted_loom
    info = ConnectionInfo.read(Path(km.connection_file))
    out: list[str] = []

    async def main() -> str:
        async with asyncio.timeout(30), connect_client(info) as kc:
            reply = await kc.execute(
                "print('admitted')", on_output=lambda m: out.append(m.content.get("text", ""))
            )
        return str(reply.content["status"])

    assert asyncio.run(main()) == "ok"
    assert "".join(out) == "admitted\n"


def test_a_restarted_kernel_refuses_what_jupyter_client_sent_before_the_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # jupyter_client restarts with the same connection file (same key, same Curve keys);
    # the capture is a fraction of a second older than the restart: no allowance.
    monkeypatch.setenv("LOOM_REPLAY_SKEW", "0")
    marker = tmp_path / "ran"
    km = KernelManager(kernel_name="loom", transport_encryption="required")
    km.start_kernel()
    try:
        kc = km.blocking_client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=30)
            code = f"open({str(marker)!r}, 'a').write('captured ')"
            content = {"code": code, "silent": False, "store_history": False}
            content |= {"user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
            captured = km.session.serialize(km.session.msg("execute_request", content))
            shell = km.connect_shell()  # a Curve socket, as jupyter_client configures it
            try:
                shell.send_multipart(captured)
                assert shell.poll(20_000), "no reply before the restart"
                shell.recv_multipart()
                assert marker.read_text() == "captured "
                km.restart_kernel(now=True)
                kc.wait_for_ready(timeout=30)
                shell.send_multipart(captured)  # the replay, to the new kernel
                fresh = km.session.msg("kernel_info_request")
                shell.send_multipart(km.session.serialize(fresh))  # same socket: after it
                assert shell.poll(20_000), "no reply after the restart"
                _, frames = km.session.feed_identities(shell.recv_multipart())
                reply = km.session.deserialize(frames)
                assert reply["parent_header"]["msg_id"] == fresh["header"]["msg_id"]
            finally:
                shell.close(linger=0)
        finally:
            kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    assert marker.read_text() == "captured "  # not run again
