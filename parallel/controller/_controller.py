"""A controller process: the hub, its notification PUB and, optionally, its engines.

Theory of operation
-------------------
``run_controller`` binds the hub ROUTER and the notification PUB on free ports (chosen
while binding), writes the cluster file (0600, the Jupyter runtime directory), starts
the engines it was asked for through its launcher (``parallel.launchers``: local
processes by default, or mpiexec, a Slurm job, ssh; ``--launcher``), prints ``loom
controller ready <path>`` on stdout (what a launcher waits for), and serves until a
``shutdown_request`` with ``hub: true``, SIGTERM or SIGINT. Then its launcher stops the
engines it started, and it closes its sockets and removes the cluster file and the
launcher's directory. A launcher that cannot start is reported (``loom launcher`` status
line) and the controller exits with status 1. Every task belongs to one ``TaskGroup``;
there are no threads.

With ``parent_pid`` (set by ``Cluster`` for a controller that belongs to a script) the
controller also stops when that process exits, so a killed script leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from kernel.protocol._freshness import DEFAULT_SKEW

from ..launchers import LaunchContext, Launcher, LaunchError, LauncherStatus, make_launcher
from ._restarts import RestartPolicy

# The rest (zmq, the hub, the records) is imported once the launcher has started: what
# ``python -m parallel.controller`` imports before it is what delays the engines' start.
if TYPE_CHECKING:
    import zmq

    from kernel.transport import MessageSocket

    from ..protocol._controller_info import ControllerInfo
    from ._db import TaskDB
    from ._hub import Hub

__all__ = ["READY_LINE", "run_controller"]

log = logging.getLogger("loom.controller")

#: What the controller prints, followed by the cluster file's path, once it serves.
READY_LINE = "loom controller ready"


async def run_controller(
    *,
    ip: str = "127.0.0.1",
    transport: str = "tcp",
    engines: int = 0,
    cluster_file: str | os.PathLike[str] | None = None,
    parent_pid: int | None = None,
    ready_fd: int | None = None,
    launcher: Launcher | None = None,
    curve: bool | None = None,
    db: bool = True,
    durability: str = "async",
    restore: bool = False,
    restart: RestartPolicy | None = None,
    heartbeat_timeout: float | None = None,
    setup_timeout: float | None = None,
    replay_skew: float = DEFAULT_SKEW,
    cluster_id: str | None = None,
) -> int:
    """Serve a cluster until told to stop; returns the exit status (0, or 1 if the
    launcher could not start its ``engines``: ``parallel.launchers``; local by default).

    Once serving, the cluster file's path is written as one line to stdout and, if given,
    to ``ready_fd`` (then closed): a launcher waits for that line, not for a file to appear.

    ``curve``: CurveZMQ on every socket of the cluster; None: on unless ``ip`` is loopback
    (``_security``); False off loopback prints a warning.

    ``restart``: when to replace engines that die (``None``: never); only launchers that
    ``can_replace`` do. ``setup_timeout``: seconds a recorded setup item may run on a
    joining engine before it is announced with a timeout error (None: the hub's
    ``SETUP_TIMEOUT``).

    ``replay_skew`` (``LOOM_REPLAY_SKEW``): the hub refuses signed requests dated more
    than this many seconds before this start, so a request captured before a restart
    (``--restore``) is not taken again by the new controller, whose replay memory is
    empty (``kernel/protocol/_freshness.py``; docs/parallel.md, Security).

    ``cluster_id``: the cluster's id (default: a new one); ``_main`` picks it before it
    starts the local engines' fork server, which is given the cluster file's path.
    """
    started = time.time()
    launch = launcher if launcher is not None else make_launcher("local")
    if launch.engines_off_loopback:  # its engines are reachable from other machines (ssh)
        if curve is None:
            curve = True
        elif not curve:
            from ._security import plaintext_warning

            print(
                plaintext_warning("tcp", f"the {launch.name} engines' hosts", False),
                file=sys.stderr,
                flush=True,
            )
    # A launcher whose command needs only the cluster file's path (mpiexec, sbatch) is
    # started first, and the controller imports, binds and writes that file while the
    # command starts (its engines wait for the file: _node_engine). The controller's own
    # start (~0.25 s on a quiet machine, over 1 s loaded) then no longer comes before it.
    early = bool(engines) and not restore and launch.starts_before_controller
    # --restore: the dead controller's addresses and key, so its engines come back.
    restored = _rebind(cluster_file) if restore else None
    if restored is not None:
        cluster_id = restored[0].cluster_id
    elif cluster_id is None:
        cluster_id = uuid.uuid4().hex[:12]
    path = _cluster_path(cluster_file, cluster_id) if early else None
    workdir = path.parent / f"loom-launch-{cluster_id}" if path is not None else None
    info: ControllerInfo | None = None
    hub_sock: MessageSocket | None = None
    notify: zmq.Socket[bytes] | None = None
    store: TaskDB | None = None
    hubs: list[Hub] = []  # the hub, once made: an engine exit before it is no news to it
    ctx: LaunchContext | None = None
    starting: asyncio.Task[int] | None = None  # an early launcher's start
    status = 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:

            def lost(pid: int, how: str) -> None:
                if hubs:
                    _lost(hubs[0], launch, pid, how)

            if early:
                assert path is not None
                assert workdir is not None
                # No stale file at this path for the engines to read.
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                path.unlink(missing_ok=True)
                workdir.mkdir(mode=0o700, exist_ok=True)
                ctx = LaunchContext(path, tg, lost, workdir, cluster_id)
                # A task, run here up to its first wait (the command is spawned by then):
                # a launcher that waits for its command (sbatch) does so while the rest
                # of the controller starts, instead of before it.
                starting = tg.create_task(_start_engines(launch, engines, ctx, stop))
                await asyncio.sleep(0)
            from ..protocol._shm import create_cluster_dir
            from ._durable import open_records
            from ._engines_file import live_engines
            from ._hub import Hub

            try:
                info, hub_sock, notify = restored or _bind(ip, transport, curve, cluster_id)
            except BindError as exc:  # one line, and an early launcher is stopped
                print(f"loom controller: {exc}", file=sys.stderr, flush=True)
                if starting is not None:
                    await starting
                    await launch.stop()
                    ctx = None
                return 2
            # Replays (issue 12): requests naming this start's instance (the cluster file
            # says it) are taken whatever their date; others must be dated after this start.
            info = dataclasses.replace(info, instance=uuid.uuid4().hex)
            hub_sock.session.not_before = started - replay_skew
            hub_sock.session.instance = info.instance
            hub_sock.session.strict_instance = False  # peers from before a --restore: the old
            path = info.write(path if path is not None else cluster_file)
            if info.authenticates_peers and os.environ.get("LOOM_SHM", "").lower() != "off":
                create_cluster_dir(info.cluster_id)  # large buffers on this host (protocol/_shm)
            workdir = path.parent / f"loom-launch-{info.cluster_id}"
            hub = Hub(info, hub_sock, notify, tg, on_shutdown=stop.set)
            hubs.append(hub)
            store = open_records(hub, path, db=db, durability=durability, restore=restore)
            hub.restart_policy = restart
            hub.heartbeat_timeout = heartbeat_timeout  # None: by address (_liveness)
            if setup_timeout is not None:
                hub.setup_timeout = setup_timeout
            if restore:  # the setup recorded before the crash is replayed on new engines
                hub.load_setup()
            if launch.can_replace:
                hub.replace = launch.replace
            else:
                hub.no_restart = f"the {launch.name or 'engine'} launcher cannot replace engines"
            if restart is None:
                hub.no_restart = "restarts are off (--no-restart)"
            hub.launched = lambda pid: launch.uuid_of(pid) is not None
            if ctx is None:
                ctx = LaunchContext(path, tg, lost, workdir, info.cluster_id)
            if restore:  # the dead controller's engines here: watched, replaced if they die
                launch.adopt(live_engines(path), ctx)
            serving = [tg.create_task(hub.serve(), name="loom-hub")]
            if parent_pid:
                serving.append(tg.create_task(_stop_with(parent_pid, stop), name="loom-parent"))
            if engines and not restore and not early:  # a restored cluster's engines come back
                workdir.mkdir(mode=0o700, exist_ok=True)
                status = await _start_engines(launch, engines, ctx, stop)
            if starting is not None:
                status = await starting
            if status == 0:
                _announce(path, ready_fd)
            await stop.wait()
            hub.stopping = True  # engines stopped from now on are not replaced
            if restore:  # engines that re-attached: no launcher of ours stops them
                from ._durable import stop_reattached

                await stop_reattached(hub, list(hub.engines.values()))
            await launch.stop()
            for task in serving:
                task.cancel()
            hub.close()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if ctx is not None and not hubs:  # started early, and the controller never served
            await launch.stop()
        if hub_sock is not None:
            hub_sock.close()
        if notify is not None:
            notify.close(linger=100)
        if store is not None:
            store.close()
        if path is not None:
            path.unlink(missing_ok=True)
            from ._durable import remove_records

            remove_records(path)
        from kernel.protocol import runtime_dir

        for engine_file in runtime_dir().glob(f"kernel-engine-{cluster_id}-*.json"):
            engine_file.unlink(missing_ok=True)  # engines stopped by a signal leave theirs
        if info is not None and info.transport == "ipc":
            shutil.rmtree(info.ip, ignore_errors=True)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        from ..protocol._shm import remove_cluster_dir

        remove_cluster_dir(cluster_id)  # with what crashed clients and engines left
    return status


async def _start_engines(
    launch: Launcher, engines: int, ctx: LaunchContext, stop: asyncio.Event
) -> int:
    """``launch.start``; 0, or 1 (said on stdout, ``stop`` set) if it failed."""
    try:
        await launch.start(engines, ctx)
    except LaunchError as exc:  # said on stdout; Cluster quotes it
        ctx.report(LauncherStatus("failed", str(exc), exc.output[-2000:]))
    except Exception as exc:  # a launcher's own bug: said too, and stop() still runs
        log.exception("the %s launcher failed to start", launch.name or "engine")
        ctx.report(LauncherStatus("failed", f"{type(exc).__name__}: {exc}"))
    else:
        return 0
    stop.set()
    return 1


def _cluster_path(cluster_file: str | os.PathLike[str] | None, cluster_id: str) -> Path:
    """Where the cluster file goes (``ControllerInfo.default_path`` unless given)."""
    if cluster_file is not None:
        return Path(cluster_file)
    from kernel.protocol import runtime_dir

    return runtime_dir() / f"loom-cluster-{cluster_id}.json"


def _rebind(
    cluster_file: str | os.PathLike[str] | None,
) -> tuple[ControllerInfo, MessageSocket, zmq.Socket[bytes]]:
    from ._durable import rebind

    return rebind(cluster_file)


def _bind(
    ip: str, transport: str, curve: bool | None = None, cluster_id: str | None = None
) -> tuple[ControllerInfo, MessageSocket, zmq.Socket[bytes]]:
    """Bind the hub and the notification PUB; ``ipc`` in a fresh 0700 directory; with
    Curve (``_security.wants_curve``) both admit only the cluster's client key."""
    import zmq

    from kernel.protocol import Session
    from kernel.transport import MessageSocket, shared_context
    from kernel.transport._curve import new_curve_keys

    from ..protocol._controller_info import ControllerInfo
    from ..protocol._hub_limits import hub_max_message_size, limit_hub_sockets
    from ._security import context_of, plaintext_warning, serve_sockets_with_curve, wants_curve

    try:  # before any socket: a bad setting is one line, and nothing to close
        limit = hub_max_message_size()
    except ValueError as exc:
        raise BindError(str(exc)) from None
    ctx = shared_context()
    router: zmq.Socket[bytes] = zmq.Socket(ctx, zmq.ROUTER)
    notify: zmq.Socket[bytes] = zmq.Socket(ctx, zmq.PUB)
    for sock in (router, notify):
        sock.linger = 0
        sock.sndhwm = 0  # replies and notifications are small and must not be dropped
        sock.ipv6 = ":" in ip
    info = ControllerInfo(
        cluster_id=cluster_id or uuid.uuid4().hex[:12],
        key=ControllerInfo.new_key(),
        pid=os.getpid(),
        max_message_size=limit,
    )
    use_curve = wants_curve(transport, ip, curve)
    # Frames of any size were taken (issue 12): peers learn the limit from the cluster file.
    limit_hub_sockets(router, notify, limit, use_curve)
    if use_curve:
        info = dataclasses.replace(info, curve=new_curve_keys())
        assert info.curve is not None
        serve_sockets_with_curve(info.curve, [router, notify], context_of(router))
    elif (warning := plaintext_warning(transport, ip, use_curve)) is not None:
        print(warning, file=sys.stderr, flush=True)
    if transport == "ipc":
        # A short path (socket file names are limited to ~107 bytes), owner-only.
        info = dataclasses.replace(info, transport="ipc", ip=tempfile.mkdtemp(prefix="loom-"))
        info = dataclasses.replace(info, hub_port=1, notify_port=2)
        router.bind(info.hub_url)
        notify.bind(info.notify_url)
    else:
        host = f"tcp://[{ip}]" if ":" in ip else f"tcp://{ip}"
        try:
            hub_port = router.bind_to_random_port(host)
            notify_port = notify.bind_to_random_port(host)
        except zmq.ZMQError as exc:  # an address not of this host, a bad name: one line
            router.close(linger=0)
            notify.close(linger=0)
            raise BindError(f"cannot listen on {ip!r}: {exc.strerror}") from None
        info = dataclasses.replace(info, ip=ip, hub_port=hub_port, notify_port=notify_port)
    return info, MessageSocket(router, Session(info.key), "hub"), notify


class BindError(Exception):
    """The controller cannot bind its sockets where it was told (``--ip``)."""


def _announce(path: Path, ready_fd: int | None) -> None:
    print(f"{READY_LINE} {path}", flush=True)
    if ready_fd is not None:
        with contextlib.suppress(OSError), open(ready_fd, "w", encoding="utf-8") as pipe:
            pipe.write(f"{path}\n")


def _lost(hub: Hub, launch: Launcher, pid: int, how: str) -> None:
    hub.process_exited(pid, how, launch.uuid_of(pid), launch.output_of(pid))


async def _stop_with(pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` when process ``pid`` exits (a pidfd: no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        stop.set()
        return
    exited = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, exited.set)
    try:
        await exited.wait()
        stop.set()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


@contextlib.contextmanager
def _said_in_one_line(*kinds: type[Exception]) -> Iterator[None]:
    """``kinds`` end the controller with one line on stderr (exit status 2), no traceback."""
    try:
        yield
    except kinds as exc:
        print(f"loom controller: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def launcher_from_json(text: str) -> Launcher:
    """The launcher ``--launcher`` describes; :class:`LaunchError` if it is wrong."""
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise LaunchError(f"--launcher is not JSON: {exc}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("engines"), str):
        raise LaunchError('--launcher must be {"engines": NAME, "options": {...}}')
    options = spec.get("options", {})
    if not isinstance(options, dict):
        raise LaunchError("--launcher options must be an object")
    return make_launcher(spec["engines"], options)


def restart_policy(limit: str) -> RestartPolicy:
    """The policy ``--restart-limit DEATHS/SECONDS`` describes; ValueError if wrong."""
    deaths, slash, seconds = limit.partition("/")
    try:
        return RestartPolicy(max_deaths=int(deaths), window=float(seconds))
    except ValueError as exc:
        detail = "" if not slash else f": {exc}"
        raise ValueError(
            f"--restart-limit {limit!r}: use DEATHS/SECONDS, e.g. 3/60{detail}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """``python -m parallel.controller``: :func:`._main.main` (it starts a local fork
    server before importing this module)."""
    from ._main import main as controller_main

    return controller_main(argv)
