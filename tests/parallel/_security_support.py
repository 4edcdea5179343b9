"""What the security tests run inside a network namespace (``python -c``, one JSON line out).

``client_scenario`` is a client on another "host": it runs code carrying a token on the
cluster's engine (the token in the code, its reverse only in the printed output), then
tries the cluster as each unauthorised peer would, and reports what happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import zmq
from _cluster_support import main_function

from kernel.client import connect_client
from kernel.protocol import ConnectionInfo, CurveKeys, Session, runtime_dir
from kernel.transport._curve import new_curve_keys
from parallel import Client, ClusterUnavailable
from parallel.engine import EngineStartError
from parallel.engine._engine import register
from parallel.protocol import serialize_call
from parallel.protocol._controller_info import ControllerInfo

#: How long an unauthorised peer may take to be told (the handshake takes milliseconds).
TOLD_WITHIN = 10.0


def _variant(info: ControllerInfo, curve: CurveKeys | None, path: Path) -> Path:
    return dataclasses.replace(info, curve=curve).write(path)


def _unauthorised(info: ControllerInfo, directory: Path) -> dict[str, Any]:
    """Each unauthorised peer's client: what it was told, and how long that took."""
    assert info.curve is not None
    other = new_curve_keys()
    peers = {
        "plaintext": None,
        "wrong server key": dataclasses.replace(
            info.curve.client_view(), server_public=other.server_public
        ),
        "random keypair": dataclasses.replace(
            info.curve.client_view(),
            client_public=other.client_public,
            client_secret=other.client_secret,
        ),
    }
    told: dict[str, Any] = {}
    for name, curve in peers.items():
        path = _variant(info, curve, directory / f"{name.replace(' ', '-')}.json")
        started = time.monotonic()
        try:
            Client(path, timeout=TOLD_WITHIN * 3).close()
            told[name] = {"error": None}
        except ClusterUnavailable as exc:
            told[name] = {"error": str(exc), "seconds": time.monotonic() - started}
        started = time.monotonic()  # an engine with these keys, registering
        try:
            register(ControllerInfo.read(path), ConnectionInfo(), "x", TOLD_WITHIN * 3)
            told[name]["engine"] = None
        except EngineStartError as exc:
            told[name]["engine"] = str(exc)
            told[name]["engine_seconds"] = time.monotonic() - started
    return told


async def _attach(info: ConnectionInfo, token: str) -> str:
    """What ``loom console --existing`` does with an engine's connection file."""
    async with connect_client(info, ready_timeout=30) as kernel:
        reply = await kernel.execute(f"x = {token!r}.lower()")
        return str(reply.content["status"])


def _raw_null_request(info: ControllerInfo, url: str) -> bool:
    """A plaintext DEALER sends a validly signed request to ``url``: answered at all?"""
    session = Session(info.key)
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(url)
        request = session.message("kernel_info_request", {})
        try:
            sock.send_multipart(session.serialize(request), zmq.NOBLOCK)
        except zmq.Again:
            return False  # no connection took it
        return bool(sock.poll(3000))
    finally:
        sock.close()


def _tampered_buffer(info: ControllerInfo, url: str) -> dict[str, Any]:
    """Sign an apply_request's buffers, change one, send it: the engine's answer."""
    session = Session(info.key)
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(url)
        buffers = serialize_call(len, ([1, 2],), {})
        metadata = {"buffers_hmac": session.signer.sign_buffers(buffers)}
        tampered = [*buffers[:-1], buffers[-1] + b"x"]
        request = session.message("apply_request", {}, metadata=metadata, buffers=tampered)
        sock.send_multipart(session.serialize(request))
        if not sock.poll(20_000):
            return {"answered": False}
        reply = session.deserialize(sock.recv_multipart()).message
        return {"answered": True, "content": reply.content}
    finally:
        sock.close()


def client_scenario(spec: str) -> None:
    options = json.loads(spec)
    token = options["token"]
    report: dict[str, Any] = {}
    try:
        rc = Client(options["file"], timeout=30)
        rc.wait_for_engines(1, timeout=60)
        source = f"def shout():\n    print({token!r}[::-1])\n    return len({token!r})\n"
        result = rc[0].apply_async(main_function(source, "shout"))
        report["result"] = result.get(timeout=60)
        report["stdout"] = result.stdout
        report["engine_address"] = rc._records[0].address
        info = rc.info
        engine = info.engine_connection(rc._records[0].address, rc._records[0].ports)
        rc.close()
        if info.curve is not None:
            [engine_file] = runtime_dir().glob("kernel-engine-*.json")
            attached = ConnectionInfo.read(engine_file)
            report["engine_file_can_serve"] = (
                attached.curve is not None and attached.curve.can_serve
            )
            report["attached"] = asyncio.run(asyncio.wait_for(_attach(attached, token), 60))
            report["told"] = _unauthorised(info, Path(options["dir"]))
            report["null_hub_answered"] = _raw_null_request(info, info.hub_url)
            report["null_engine_answered"] = _raw_null_request(info, engine.url("shell"))
        else:
            report["tampered"] = _tampered_buffer(info, engine.url("shell"))
    except ClusterUnavailable as exc:
        report["error"] = str(exc)
    print(json.dumps(report), flush=True)
