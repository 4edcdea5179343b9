"""An engine process: Loom's kernel server, one more handler, registered with a controller.

Theory of operation
-------------------
1. Read the cluster file: the controller's address and the cluster key.
2. Bind the five kernel sockets on free ports (``open_kernel_sockets``: no port race),
   signed with the cluster key.
3. Register: one ``registration_request`` with the uuid, pid and ports on a short-lived
   DEALER to the hub; the ``registration_reply`` gives the engine its id. This happens
   before asyncio and the server are imported, so an engine is announced as early as it
   can be; requests that clients send meanwhile wait in the bound sockets.
4. ``start_io`` + ``serve(setup=make_engine)``: the kernel as ``python -m kernel`` runs
   it, plus the ``apply_request`` handler (composition: nothing is subclassed).

An engine outlives its controller for a while (issue 13): a controller killed and
restarted with ``--restore`` finds its engines serving, namespaces intact. Its hub link
(``_hub_link``) pings the hub, registers again when a restarted hub asks it to, and ends
the engine once the controller has been gone for ``LOOM_CONTROLLER_GRACE`` seconds (300
by default). The ``local`` launcher sets no ``JPY_PARENT_PID`` for that reason; where a
launcher does (mpi ranks on the controller's node, an ssh agent's engines), the
kernel's parent watch still ends the engine with that process, as before. The same
link copies each task's request and reply to the controller's records (``_recorder``),
off the client's round trip.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
import time
import uuid as uuidlib
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from kernel.protocol import (
    CHANNELS,
    ConnectionFileError,
    ConnectionInfo,
    JSONDict,
    Message,
    ProtocolError,
    Reply,
    Session,
    error_content,
    runtime_dir,
)
from kernel.protocol._freshness import address_to, replay_skew
from kernel.transport._curve import HandshakeWatch, connect_curve

from ..protocol._controller_info import ControllerInfo
from ..protocol._direct_frames import direct_enabled, direct_path
from ..protocol._engine_traits import registration_traits, traits_from_env
from ..protocol._shm import join_cluster_dir, shm_threshold
from ._abort_list import AbortList
from ._apply import EngineIdentity, handle_apply, with_shared_memory
from ._call_cache import CallCache
from ._direct import DirectShell, listen_direct
from ._hub_link import HubLink
from ._recorder import recorded
from ._scheduling import run_as_batch_work, wants_batch_policy

if TYPE_CHECKING:
    from kernel.server import KernelServer

__all__ = [
    "EngineStartError",
    "engine_connection_file",
    "make_engine",
    "register",
    "run_engine",
]

#: How long an engine waits for the controller to answer its registration (seconds).
REGISTRATION_TIMEOUT = 30.0


class EngineStartError(Exception):
    """The engine could not join its cluster (no controller answer, or a refusal)."""


def make_engine(
    server: KernelServer,
    *,
    engine: EngineIdentity,
    link: HubLink | None = None,
    direct: socket.socket | None = None,
) -> None:
    """Turn a Loom kernel server into an engine: handlers added, nothing subclassed.

    Shell: ``apply_request``, answered without ``busy``/``idle``: the reply's
    ``outputs`` count tells the client when it has every output. Control (answered on
    the I/O thread even while a task runs): ``abort_request`` (ipyparallel messaging:
    the listed requests, when they come up, are answered ``aborted`` instead of run)
    and ``signal_request`` (send a signal to the engine; SIGINT interrupts the running
    task as ``interrupt_request`` does).

    ``direct``: the listening socket of the direct shell (``_direct``), if any: clients
    of this host send shell requests there, without ZeroMQ.
    """
    if direct is not None:
        DirectShell(server.shell, direct).start()  # lives as long as the process
    aborted = AbortList()
    # Calls unpickled before, reused where nothing could tell (_call_cache).
    apply = partial(handle_apply, server, engine, calls=CallCache())
    if link is not None:  # the hub link: controller watch and records (module docstring)
        link.on_give_up = lambda reason: server.stop_from_thread()
        if link.recording:
            apply = recorded(apply, link)  # type: ignore[assignment]
        link.start()
    # Shared memory outermost: records and the call see data, never file names (_apply).
    server.shell_handlers["apply_request"] = with_shared_memory(
        aborted.guard(apply), server, engine
    )
    server.unannounced.add("apply_request")  # the reply counts its outputs: no busy/idle
    server.shell_handlers["execute_request"] = aborted.guard(
        server.shell_handlers["execute_request"]
    )
    server.io.control_handlers["abort_request"] = aborted.on_abort_request
    server.io.control_handlers["signal_request"] = partial(_on_signal_request, server)


def _on_signal_request(server: KernelServer, request: Message) -> Reply:
    sig = request.content.get("sig")
    if not isinstance(sig, int) or sig not in set(signal.Signals):
        return Reply(error_content(ValueError(f"not a signal number: {sig!r}")))
    if sig == signal.SIGINT:
        server.interrupt()
    else:
        os.kill(os.getpid(), sig)
    return Reply({"status": "ok"})


def register(
    controller: ControllerInfo,
    info: ConnectionInfo,
    engine_uuid: str,
    timeout: float,
    max_message_size: int = 0,
    answer: JSONDict | None = None,
    instance: str = "",
) -> int:
    """Register with the controller's hub; the engine id it gives.

    ``answer``, if given, is updated with the hub's whole reply (``durability``...).

    ``max_message_size`` (the shell socket's frame limit, 0: none) travels in the record
    so that clients refuse a larger argument with a clear error: libzmq would drop the
    connection silently and the request would never be answered. ``instance`` (this
    process's, new at each start) too: clients name it in every request they send the
    engine, which refuses requests naming another (``kernel/protocol/_freshness.py``).

    Raises :class:`EngineStartError` if the hub does not answer within ``timeout``
    seconds or refuses.
    """
    session = Session(controller.key, controller.signature_scheme)
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    if controller.curve is not None:
        connect_curve(sock, controller.curve)
    watch = HandshakeWatch(sock)  # before connecting: a refusal is told, not waited out
    try:
        sock.connect(controller.hub_url)
        content = registration_content(info, engine_uuid, max_message_size, instance)
        request = session.message("registration_request", content)
        address_to(request.header, controller.instance)  # this controller's start (replays)
        sock.send_multipart(session.serialize(request))
        _await_answer(sock, watch, controller.hub_url, timeout)
        try:
            reply = session.deserialize(sock.recv_multipart()).message
        except ProtocolError as exc:
            raise EngineStartError(f"the controller's answer was invalid: {exc}") from exc
    finally:
        watch.close()
        sock.close()
    engine_id = reply.content.get("id")
    if reply.content.get("status") != "ok" or not isinstance(engine_id, int):
        reason = reply.content.get("evalue", reply.content)
        raise EngineStartError(f"the controller refused the engine: {reason}")
    if answer is not None:
        answer.update(reply.content)
    return engine_id


def _await_answer(sock: zmq.Socket[bytes], watch: HandshakeWatch, url: str, timeout: float) -> None:
    """Wait until ``sock`` has the hub's answer; :class:`EngineStartError` at once if the
    hub refused our Curve handshake, or after ``timeout`` seconds of silence."""
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(watch.socket, zmq.POLLIN)
    deadline = time.monotonic() + timeout
    while not sock.poll(0):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise EngineStartError(f"the controller at {url} did not answer within {timeout:g} s")
        poller.poll(int(remaining * 1000) + 1)
        watch.read()
        if watch.failure is not None:
            raise EngineStartError(f"{watch.failure} (the controller at {url})")


def registration_content(
    info: ConnectionInfo, engine_uuid: str, max_message_size: int, instance: str = ""
) -> JSONDict:
    """What an engine's ``registration_request`` says (sent again as is to re-register)."""
    ports = {f"{ch}_port": info.port(ch) for ch in CHANNELS}
    return {
        "uuid": engine_uuid,
        # Replays (issue 12): requests for this engine name it, see register().
        **({"instance": instance} if instance else {}),
        "pid": os.getpid(),
        "address": info.ip,
        "ports": ports,
        "max_message_size": max_message_size,
        # LOOM_ENGINE_LABELS / _RESOURCES (``loom engine --label``), checked by run_engine.
        **registration_traits(os.environ),
    }


def run_engine(
    cluster_file: str,
    *,
    timeout: float = REGISTRATION_TIMEOUT,
    engine_uuid: str | None = None,
    bind: str | None = None,
) -> int:
    """Run an engine of the cluster in ``cluster_file`` until shut down; ends the process.

    ``engine_uuid``: register as this engine (a replacement, forked by the ``local``
    launcher for an engine that died, takes its uuid and so gets its id back); default new.

    ``bind``: the address the engine's sockets bind (tcp), default the cluster file's
    (the controller's). An engine on another node binds its own (``_node_engine``); the
    controller is still reached at the cluster file's address, by the registration and
    by the hub link (which re-registers the engine after a partition).

    Returns 2 (with a message on stderr) if the cluster file or a ``LOOM_*`` socket
    setting is unreadable and 3 if the engine could not register; otherwise the process
    ends when the engine stops.
    """
    from kernel.server import end_process, serve, start_io
    from kernel.transport import SocketLimits, SocketLimitsError, open_kernel_sockets

    # Replays (issue 12): requests from Loom's clients and hub name this instance (new at
    # each start, so also for a replacement with the same uuid and id); others (a Jupyter
    # client attached as to a kernel) must be dated after this start, as for a kernel.
    started = time.time()
    instance = uuidlib.uuid4().hex
    try:
        controller = ControllerInfo.read(cluster_file)
    except ConnectionFileError as exc:
        print(f"loom engine: {exc}", file=sys.stderr)
        return 2
    try:
        limits = SocketLimits.from_env()
        traits_from_env(os.environ)  # labels and resources: registration_content sends them
        skew = replay_skew()
        shm_min = shm_threshold(os.environ)  # LOOM_SHM, LOOM_SHM_MIN (protocol/_shm.py)
        batch = wants_batch_policy(os.environ)  # LOOM_ENGINE_SCHED (_scheduling)
    except (SocketLimitsError, ValueError) as exc:
        print(f"loom engine: {exc}", file=sys.stderr)
        return 2
    if batch:  # before the sockets: libzmq's threads, and every later one, inherit it
        run_as_batch_work()
    engine_uuid = engine_uuid or str(uuidlib.uuid4())
    address = controller.new_engine_address(engine_uuid[:8]) if bind is None else bind
    if controller.curve is not None and not controller.curve.can_serve:
        print(
            f"loom engine: {cluster_file} has no Curve server key; engines need "
            "the controller's own cluster file",
            file=sys.stderr,
        )
        return 2
    sockets = open_kernel_sockets(controller.engine_connection(address), limits=limits)
    # Shell without libzmq for clients of this host (_direct): ipc means they are. Bound
    # before registering, as the sockets: a client may connect as soon as it learns of us.
    direct_at = direct_path(address) if controller.transport == "ipc" else None
    direct = listen_direct(direct_at) if direct_at and direct_enabled(os.environ) else None
    # Before registering: a client that learns of the engine finds its marker.
    # Only where the transport admits no one else (docs/architecture.md, "Large buffers").
    shm_min = shm_min if controller.authenticates_peers else None
    shm = join_cluster_dir(controller.cluster_id, "e", engine_uuid, shm_min)
    answer: JSONDict = {}
    try:
        engine_id = register(
            controller,
            sockets.info,
            engine_uuid,
            timeout,
            limits.max_message_size,
            answer,
            instance=instance,
        )
    except EngineStartError as exc:
        print(f"loom engine: {exc}", file=sys.stderr)
        sockets.close(linger=0)
        if direct is not None and direct_at is not None:
            direct.close()
            Path(direct_at).unlink(missing_ok=True)
        if shm is not None:
            shm.unmark("e", engine_uuid)
        return 3
    from kernel.server._app import configure_loom_log

    configure_loom_log("engine")  # before start_io, which points the handler at the real stderr
    iothread = start_io(sockets, not_before=started - skew, instance=instance)
    import asyncio  # after registration and start_io, as in run_kernel

    identity = EngineIdentity(engine_id, engine_uuid, not controller.authenticates_peers, shm)
    registration = registration_content(
        sockets.info, engine_uuid, limits.max_message_size, instance
    )
    durability = answer.get("durability", "async")
    link = HubLink(
        controller,
        registration,
        engine_id,
        durability=durability if durability in ("async", "sync", "off") else "async",
    )
    setup = partial(make_engine, engine=identity, link=link, direct=direct)
    # Any Jupyter client can attach: `loom console --existing kernel-engine-<cluster>-<id>.json`.
    connection_file = for_clients(sockets.info).write(engine_connection_file(controller, engine_id))
    try:
        # History in memory: engines' cells (%px) stay out of the user's history file.
        code = asyncio.run(serve(sockets, iothread, setup=setup, keep_history=False))
    finally:
        connection_file.unlink(missing_ok=True)
        if direct is not None and direct_at is not None:
            Path(direct_at).unlink(missing_ok=True)
        if shm is not None:
            shm.unmark("e", engine_uuid)
    end_process(sockets, code)


def for_clients(info: ConnectionInfo) -> ConnectionInfo:
    """What an engine's connection file says: no Curve server secret (a client needs none;
    with it, a reader could pose as the engine)."""
    return info if info.curve is None else dataclasses.replace(info, curve=info.curve.client_view())


def engine_connection_file(controller: ControllerInfo, engine_id: int) -> Path:
    """Where engine ``engine_id`` of a cluster writes its kernel connection file."""
    return runtime_dir() / f"kernel-engine-{controller.cluster_id}-{engine_id}.json"
