"""The ``ssh`` launcher: engines on listed hosts, started with the system ``ssh``.

``Cluster(engines="ssh", hosts={"node1": 4, "node2": 4})``: one ``ssh`` per host runs
``PYTHON -P -m parallel.launchers._ssh_agent`` there (Loom installed at the same
interpreter path, or ``python=``), with ``-R SOCKET:CONTROLLER_IP:HUB_PORT``: the
controller stays bound where it is (loopback by default) and is reached only through the
SSH tunnel. The agent gets the cluster's settings, keys included, as one JSON line on the
ssh channel's stdin (never in an argv), starts its engines bound to the address the ssh
connection arrived on, relays their registration through the tunnel, and stops them when
its stdin closes. Clients and the controller's heartbeats reach each engine's own five
ports directly on that address: with CurveZMQ (``engines_off_loopback``), so only holders
of the cluster's client key connect and nothing travels in clear text.

Replacement (``can_replace``): each agent reports ``loom agent: started PID UUID`` and
``loom agent: exited PID CODE`` (after ``output PID "TAIL"`` for a failed one: the end of
its log, for :meth:`output_of`) on ssh's stdout, which the launcher reads as it comes
(and copies to the log); an exit goes to the hub with how the engine ended, and
:meth:`replace` writes ``fork UUID`` to that host's ssh stdin. Pids are the hosts' own:
two hosts may report the same one, so the hub matches an exit by uuid too.

:meth:`stop` closes each ssh's stdin, so every agent stops its engines and exits, then
waits for the ssh processes (SIGTERM, then SIGKILL, after ``STOP_GRACE``). If an ssh
ends before that (host unreachable, key refused, Loom missing there, all its engines
died and none was replaced), the launcher reports ``failed`` with what ssh and the agent
printed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import sys
from collections.abc import Mapping, Sequence

from kernel.client import describe_exit

from ..protocol._engine_traits import labels_from, resources_from, traits_env, traits_from_env
from ._base import LaunchContext, Launcher, LaunchError, describe_death
from ._launched_process import LaunchedProcess
from ._mpi import _environment, _strings, host_counts
from ._status import LauncherStatus

__all__ = ["SSHLauncher"]

#: Seconds the agents get to stop their engines once told, before ssh is killed.
STOP_GRACE = 10.0


class SSHLauncher(Launcher):
    """``hosts``: host name -> engine count (``{"node1": 4}``; a list means one each).
    ``host_labels``/``host_resources``: more labels and resources for one host's engines
    (``{"gpu1": ["gpu"]}``, ``{"gpu1": {"gpu": 2}}``), on top of ``Cluster(labels=...)``.
    ``user``, ``ssh`` (the command), ``ssh_args`` (``["-F", "my_config"]``), ``python``
    (absolute path on the hosts), ``env`` (extra environment for the engines)."""

    name = "ssh"
    engines_off_loopback = True
    can_replace = True

    def __init__(
        self,
        hosts: Mapping[str, int] | Sequence[str],
        user: str | None = None,
        ssh: str = "ssh",
        ssh_args: Sequence[str] = (),
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        host_labels: Mapping[str, Sequence[str] | str] | None = None,
        host_resources: Mapping[str, Mapping[str, float | str] | str] | None = None,
    ) -> None:
        counts = host_counts(hosts)
        if user is not None and not (isinstance(user, str) and user.isprintable() and user):
            raise LaunchError(f"user must be a user name, not {user!r}")
        if python is not None and not (isinstance(python, str) and os.path.isabs(python)):
            raise LaunchError(f"python must be an absolute path, not {python!r}")
        if not isinstance(ssh, str) or not ssh:
            raise LaunchError(f"ssh must be a command, not {ssh!r}")
        self.hosts = counts
        self.user = user
        self.ssh = ssh
        self.ssh_args = _strings("ssh_args", ssh_args)
        self.python = python or sys.executable
        self.env = _environment(env or {})
        self.host_traits = _host_traits(counts, host_labels or {}, host_resources or {})
        self.sessions: dict[str, LaunchedProcess] = {}
        self._stopping = False
        #: pid -> uuid of every engine an agent reported started; uuid -> its host.
        self._uuids: dict[int, str] = {}
        self._hosts: dict[str, str] = {}
        #: pid -> the last lines a dead engine wrote, as its agent reported them.
        self._outputs: dict[int, str] = {}

    def host_env(self, host: str, here: Mapping[str, str]) -> dict[str, str]:
        """The environment ``host``'s engines get: the cluster's labels and resources (as
        ``here``, the controller's environment, has them: ``Cluster(labels=...)``), plus
        ``host_labels``/``host_resources`` for that host (a resource named in both: the
        host's amount), then ``env``."""
        labels, resources = traits_from_env(here)
        extra_labels, extra_resources = self.host_traits.get(host, (frozenset(), {}))
        return {**traits_env(labels | extra_labels, {**resources, **extra_resources}), **self.env}

    def default_count(self) -> int:
        """Every host's count: ``hosts={"node1": 4, "node2": 4}`` starts 8 engines."""
        return sum(self.hosts.values())

    def plan(self, n: int) -> dict[str, int]:
        """How many of ``n`` engines each host gets: hosts in order, up to their counts."""
        if n > self.default_count():
            raise LaunchError(f"{n} engines asked, but hosts has room for {self.default_count()}")
        plan: dict[str, int] = {}
        for host, count in self.hosts.items():
            take = min(count, n - sum(plan.values()))
            if take:
                plan[host] = take
        return plan

    async def start(self, n: int, ctx: LaunchContext) -> None:
        ssh = shutil.which(self.ssh)
        if ssh is None:
            raise LaunchError(f"{self.ssh}: not found (install OpenSSH's client)")
        cluster = json.loads(ctx.cluster_file.read_text(encoding="utf-8"))
        if cluster.get("transport") != "tcp":
            raise LaunchError("ssh engines need transport='tcp' (ipc is for one machine)")
        controller_ip = cluster["ip"] if cluster["ip"] not in ("0.0.0.0", "::") else "127.0.0.1"
        for host, count in self.plan(n).items():
            socket = f"/tmp/loom-ssh-{ctx.cluster_id}-{secrets.token_hex(4)}.sock"
            forward = f"{socket}:{controller_ip}:{cluster['hub_port']}"
            target = f"{self.user}@{host}" if self.user else host
            argv = [
                ssh, *self.ssh_args, "-T",
                "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
                "-o", "StreamLocalBindUnlink=yes", "-o", "ServerAliveInterval=10",
                "-o", "ConnectTimeout=30", "-R", forward, target,
                self.python, "-P", "-m", "parallel.launchers._ssh_agent",
            ]  # fmt: skip
            log = ctx.workdir / f"ssh-{len(self.sessions)}.log"
            try:
                session = LaunchedProcess(argv, log=log, stdin_pipe=True, stdout_pipe=True)
            except OSError as exc:
                raise LaunchError(f"cannot run {ssh}: {exc.strerror or exc}") from None
            self.sessions[host] = session
            env = self.host_env(host, os.environ)
            settings = {"cluster": cluster, "n": count, "socket": socket, "env": env}
            assert session.stdin is not None
            try:  # a pipe's buffer takes this one small line without blocking
                session.stdin.write(json.dumps(settings).encode() + b"\n")
                session.stdin.flush()
            except OSError:
                pass  # ssh already exited: its watcher reports why
            ctx.tg.create_task(self._watch(host, session, ctx), name=f"loom-ssh-{host}")
        hosts = ", ".join(
            f"{host} ({self.plan(n)[host]} engines, ssh pid {session.pid})"
            for host, session in self.sessions.items()
        )
        ctx.report(LauncherStatus("running", f"ssh to {hosts}", log=str(ctx.workdir / "ssh-0.log")))

    async def _watch(self, host: str, session: LaunchedProcess, ctx: LaunchContext) -> None:
        await self._read_reports(host, session, ctx)  # until ssh's output ends
        code = await session.wait()
        if self._stopping:
            return
        what = f"ssh to {host} (pid {session.pid}) {describe_exit(code)}"
        ctx.report(LauncherStatus("failed", what, session.output(), str(session.log)))

    async def _read_reports(self, host: str, session: LaunchedProcess, ctx: LaunchContext) -> None:
        """Copy ssh's output to its log, acting on the agent's report lines."""
        if session.stdout is None:
            return
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), session.stdout
        )
        try:
            with session.log.open("ab") as log:
                while line := await reader.readline():
                    log.write(line)
                    log.flush()
                    try:
                        self._report(host, line, ctx)
                    except Exception:  # a bug here must not end the controller's TaskGroup
                        logging.getLogger("loom.controller").exception("ssh report %r", line)
        finally:
            transport.close()

    def _report(self, host: str, line: bytes, ctx: LaunchContext) -> None:

        text = line.decode("utf-8", "replace")
        if text.startswith("loom agent: output "):  # PID, then the tail as a JSON string
            pid, _, tail = text[len("loom agent: output ") :].partition(" ")
            if pid.isdigit():
                self._outputs[int(pid)] = str(json.loads(tail))
            return
        match text.split():
            case ["loom", "agent:", "started", pid, engine_uuid] if pid.isdigit():
                self._uuids[int(pid)] = engine_uuid
                self._hosts[engine_uuid] = host
            case ["loom", "agent:", "exited", pid, code] if pid.isdigit():
                if not self._stopping and int(pid) in self._uuids:
                    ctx.engine_exited(int(pid), describe_death(int(code)))

    def uuid_of(self, pid: int) -> str | None:
        return self._uuids.get(pid)

    def output_of(self, pid: int) -> str:
        return self._outputs.get(pid, "")

    def replace(self, engine_uuid: str) -> None:
        """Ask the agent of ``engine_uuid``'s host for a new engine with that uuid."""
        host = self._hosts.get(engine_uuid)
        session = self.sessions.get(host) if host is not None else None
        if self._stopping or session is None or session.stdin is None:
            raise LaunchError(f"the ssh launcher has no agent for engine {engine_uuid[:8]}")
        try:  # a pipe's buffer takes one short line; the agent reads them as they come
            session.stdin.write(f"fork {engine_uuid}\n".encode())
            session.stdin.flush()
        except (OSError, ValueError) as exc:
            raise LaunchError(f"the ssh session to {host} is gone: {exc}") from None

    async def stop(self) -> None:
        """Close every ssh's stdin (its agent stops its engines and exits), then wait."""
        self._stopping = True
        for session in self.sessions.values():
            session.close_stdin()
        sessions = list(self.sessions.values())
        if sessions:
            try:
                async with asyncio.timeout(STOP_GRACE):
                    await asyncio.gather(*(session.wait() for session in sessions))
            except TimeoutError:
                pass
        for session in sessions:
            await session.stop(1.0)


def _host_traits(
    hosts: Mapping[str, int],
    labels: Mapping[str, Sequence[str] | str],
    resources: Mapping[str, Mapping[str, float | str] | str],
) -> dict[str, tuple[frozenset[str], dict[str, float]]]:
    """``host_labels`` and ``host_resources`` checked: known hosts, valid names and amounts."""
    traits: dict[str, tuple[frozenset[str], dict[str, float]]] = {}
    for option, given in (("host_labels", labels), ("host_resources", resources)):
        if not isinstance(given, Mapping):
            raise LaunchError(f"{option} must map host names to their {option[5:]}")
        for host in given:
            if host not in hosts:
                raise LaunchError(f"{option}: {host!r} is not one of hosts {sorted(hosts)}")
    for host in hosts:
        try:
            traits[host] = (labels_from(labels.get(host)), resources_from(resources.get(host)))
        except ValueError as exc:
            raise LaunchError(f"{host}: {exc}") from None
    return traits
