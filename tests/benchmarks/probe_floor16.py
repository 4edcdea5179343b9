"""How fast can one 16-engine broadcast be on this machine? A floor for issue 10's ``<= 4 ms``.

Not a benchmark of Loom against a peer (``run_all.py`` runs only ``bench_*.py``): a probe
that measures what Loom's 16-engine ``rc[:].apply_sync(zero)`` would cost if parts of it
did (almost) nothing, so that the figure of ``bench_parallel.py`` can be judged against
what its design allows. Three contenders, 16 engine processes each, in one run, blocks
of calls alternating (the order reversed every other round), medians of single calls:

- ``loom``: a ``parallel.Cluster(n=16)`` and its client, records on, as the benchmark
  (shell over the engines' direct shells, docs/architecture.md "The direct shell"; the
  bare contenders below use ZeroMQ, so they are floors of the ZeroMQ design only).
- ``bare engines``: Loom's client (``rc[:].apply_sync(zero)``) against 16 *bare engines*
  registered with a Loom controller (``Cluster(n=0)``): processes that answer each
  ``apply_request`` with a reply made from a template: the request's header parsed
  (``json.loads``), two small dicts dumped, one HMAC, Loom's own frame calls
  (``kernel.transport._frames``: pyzmq's backend without its per-frame Python layer), a
  blocking loop, batch work (``SCHED_BATCH``) as Loom's engines. No signature check, no
  unpickling, no call, no output capture, no records, no asyncio; the result is a pickle
  of 0 made once.
- ``bare both``: the same bare engines driven by a *bare client*: 16 DEALER sockets, one
  header dumped and signed per request, replies matched by their parent's ``msg_id``,
  nothing unpickled. This is the Jupyter wire format (one message per engine and back)
  over ZeroMQ on loopback ipc, and Python at both ends, with nothing else.

What a bare engine and the bare client leave out is work a real engine and client must
do (check signatures, unpickle, call, pickle, capture output, record, track results), so
each bare figure is a lower bound for what any engine or client of this design can
reach. How fast the machine was (``_machine_state``) is printed before and after the
calls. Linux; the repository importable (``_bench_common``). Every process started here
is killed by PID at the end.

Run: ``python tests/benchmarks/probe_floor16.py [--quick] [--engines N]``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as common

DELIMITER = b"<IDS|MSG>"


def zero() -> int:
    return 0


# -- a bare engine (this script with --engine CLUSTER_FILE) -------------------------------


def bare_engine(cluster_file: str) -> None:
    """Register with the controller, then answer every apply_request from a template."""
    import zmq

    from kernel.protocol import Session
    from kernel.server.channels._heartbeat_echo import start_heartbeat
    from kernel.transport import SocketLimits, open_kernel_sockets
    from kernel.transport._frames import has_input, recv_frames, send_frames
    from parallel.engine._engine import register
    from parallel.engine._scheduling import run_as_batch_work, wants_batch_policy
    from parallel.protocol._controller_info import ControllerInfo
    from parallel.protocol._serialize import serialize_object

    if wants_batch_policy(os.environ):  # as Loom's engines run (parallel/engine/_scheduling.py)
        run_as_batch_work()
    controller = ControllerInfo.read(cluster_file)
    engine_uuid = str(uuid.uuid4())
    address = controller.new_engine_address(engine_uuid[:8])
    sockets = open_kernel_sockets(
        controller.engine_connection(address), limits=SocketLimits.from_env()
    )
    start_heartbeat(sockets["hb"])  # the controller's and client's liveness checks
    engine_id = register(controller, sockets.info, engine_uuid, 30.0, instance=uuid.uuid4().hex)
    print(sockets.info.url("shell"), flush=True)  # for the bare client
    session = Session(controller.key, controller.signature_scheme)
    shell, iopub = sockets["shell"], sockets["iopub"]
    poller = zmq.Poller()
    poller.register(shell, zmq.POLLIN)
    poller.register(iopub, zmq.POLLIN)
    result = serialize_object(0)
    replies: dict[str, int] = {}  # per client session: the reply's loom_seq
    while True:
        if not has_input(shell):
            for sock, _ in poller.poll():
                if sock is iopub:  # Loom's client holds its requests until iopub_welcome
                    _welcome(session, iopub)
            continue
        frames = recv_frames(shell)
        at = frames.index(DELIMITER)
        parent = frames[at + 2]
        client = json.loads(parent).get("session", "")
        seq = replies[client] = replies.get(client, 0) + 1
        now = datetime.datetime.now(datetime.UTC).isoformat()
        header = _header(f"{engine_uuid}_{seq}", "apply_reply", engine_uuid, now)
        metadata = json.dumps(
            {
                "engine": engine_uuid,
                "engine_id": engine_id,
                "started": now,
                "status": "ok",
                "completed": now,
                "outputs": 0,
                "loom_seq": seq,
            }
        ).encode()
        content = b'{"status":"ok"}'
        signature = _sign(controller.key, header, parent, metadata, content)
        send_frames(
            shell, [*frames[:at], DELIMITER, signature, header, parent, metadata, content, *result]
        )


def _welcome(session: Any, iopub: Any) -> None:
    import zmq

    while iopub.getsockopt(zmq.EVENTS) & zmq.POLLIN:
        topic = iopub.recv()
        if topic[:1] == b"\x01":
            welcome = session.message("iopub_welcome", {"subscription": topic[1:].decode()})
            iopub.send_multipart(session.serialize(welcome, [topic[1:]] if topic[1:] else ()))


def _header(msg_id: str, msg_type: str, session: str, date: str) -> bytes:
    return json.dumps(
        {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "username": "probe",
            "session": session,
            "date": date,
            "version": "5.3",
        }
    ).encode()


def _sign(key: bytes, *parts: bytes) -> bytes:
    digest = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        digest.update(part)
    return digest.hexdigest().encode()


# -- the bare client --------------------------------------------------------------------


class BareClient:
    """One DEALER per engine; a broadcast is one signed request each, then every reply."""

    def __init__(self, urls: list[str], key: bytes, call: list[bytes]) -> None:
        import zmq

        self.zmq = zmq
        self.context = zmq.Context()
        self.sockets = []
        self.poller = zmq.Poller()
        for url in urls:
            sock = self.context.socket(zmq.DEALER)
            sock.linger = 0
            sock.connect(url)
            self.poller.register(sock, zmq.POLLIN)
            self.sockets.append(sock)
        self.key, self.call = key, call
        self.session = uuid.uuid4().hex
        self.sent = 0

    def broadcast(self) -> None:
        from kernel.transport._frames import has_input, recv_frames, send_frames

        now = datetime.datetime.now(datetime.UTC).isoformat()
        waiting = set()
        for sock in self.sockets:
            self.sent += 1
            msg_id = f"{self.session}_{self.sent}"
            header = _header(msg_id, "apply_request", self.session, now)
            signature = _sign(self.key, header, b"{}", b"{}", b"{}")
            send_frames(sock, [DELIMITER, signature, header, b"{}", b"{}", b"{}", *self.call])
            waiting.add(msg_id)
        while waiting:
            for sock, _ in self.poller.poll(10_000) or _timeout():
                while has_input(sock):
                    frames = recv_frames(sock)
                    waiting.discard(json.loads(frames[3])["msg_id"])

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.context.term()


def _timeout() -> list[Any]:
    raise TimeoutError("a bare engine did not answer within 10 s")


# -- the run ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few calls (a smoke run)")
    parser.add_argument("--engines", type=int, default=16)
    parser.add_argument("--engine", metavar="CLUSTER_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        bare_engine(args.engine)
        return 0
    import parallel
    from parallel.protocol._serialize import serialize_call

    n = args.engines
    rounds, calls = (2, 20) if args.quick else (5, 100)
    print(
        f"probe_floor16: {n} engines, {rounds} rounds of {calls} calls per contender, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    print(common.machine_state.measure().line(), flush=True)
    common.become_subreaper()
    workdir = tempfile.mkdtemp(prefix="probe-floor16-")
    loom = parallel.Cluster(n=n)
    bare = parallel.Cluster(n=0)
    engines: list[subprocess.Popen[str]] = []
    clients: list[Any] = []
    try:
        rc = loom.start_and_connect_sync()
        bare_rc = bare.start_and_connect_sync()
        clients += [rc, bare_rc]
        engines = [
            subprocess.Popen(
                [sys.executable, __file__, "--engine", str(bare.cluster_file)],
                stdout=subprocess.PIPE,
                text=True,
                env=common.child_env(Path(workdir)),
            )
            for _ in range(n)
        ]
        urls = [_read_line(p) for p in engines]
        rc.wait_for_engines(n, timeout=60)
        bare_rc.wait_for_engines(n, timeout=60)
        from parallel.protocol._controller_info import ControllerInfo

        key = ControllerInfo.read(bare.cluster_file).key
        bare_client = BareClient(urls, key, list(serialize_call(zero, (), {})))
        clients.append(bare_client)
        view, bare_view = rc[:], bare_rc[:]
        contenders: dict[str, Callable[[], object]] = {
            "loom": lambda: view.apply_sync(zero),
            "bare engines": lambda: bare_view.apply_sync(zero),
            "bare both": bare_client.broadcast,
        }
        for call in contenders.values():  # warm up, and check the answers
            for _ in range(calls):
                call()
        if view.apply_sync(zero) != [0] * n or bare_view.apply_sync(zero) != [0] * n:
            raise SystemExit("probe_floor16: a contender answered wrongly")
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for index in range(rounds):
            order = list(contenders) if index % 2 == 0 else list(reversed(contenders))
            for name in order:
                call = contenders[name]
                for _ in range(calls):
                    t0 = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - t0)
        medians = {name: statistics.median(samples) * 1e3 for name, samples in times.items()}
        for name, ms in medians.items():
            print(f"  {name:14s} median {ms:6.3f} ms  ({ms / medians['loom']:.2f}x loom)")
        print(common.machine_state.measure().line(), flush=True)
        report = {"benchmark": "probe_floor16", "quick": args.quick, "engines": n}
        print("BENCH_JSON " + json.dumps({**report, "median_ms": medians}))
    finally:
        for client in clients:
            client.close()
        for process in engines:
            process.kill()
            process.wait()
        bare.stop_cluster_sync()
        loom.stop_cluster_sync()
        left = common.descendants(os.getpid())  # whatever the clusters left
        for pid in left:
            common.sigkill_group(pid)
        if common.wait_gone(left, 10):
            raise SystemExit("probe_floor16: processes survived SIGKILL")
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _read_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line:
        raise SystemExit(f"probe_floor16: a bare engine ended (exit {process.wait()})")
    return line


if __name__ == "__main__":
    sys.exit(main())
