"""The cluster file: where a controller listens and the key its cluster signs with.

Like a kernel's connection file (``kernel.protocol.ConnectionInfo``): JSON, written
atomically and owner-only (0600) in the Jupyter runtime directory, removed when the
controller stops. Engines read it to register; clients read it to connect. Engines use
the cluster's key for their own five kernel sockets, so no key ever travels.

A cluster bound off loopback also holds its CurveZMQ keys here (``curve``: the server
and client keypairs, ``kernel.protocol.CurveKeys``), written in the same 0600 file: the
file is the one credential of the cluster, for clients and engines alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kernel.protocol import (
    ConnectionFileError,
    ConnectionInfo,
    CurveKeys,
    read_json_object,
    runtime_dir,
    write_private_json,
)

__all__ = ["CLUSTER_FILE_GLOB", "ControllerInfo", "newest_cluster_file"]

#: Cluster files in the runtime directory.
CLUSTER_FILE_GLOB = "loom-cluster-*.json"


@dataclass(frozen=True, slots=True)
class ControllerInfo:
    """A controller's address, ports and key; the content of a cluster file."""

    cluster_id: str
    key: bytes = field(repr=False)
    #: ``tcp``: ``ip`` is an address. ``ipc``: ``ip`` is an owner-only (0700) directory
    #: holding the cluster's socket files, so only this user can connect at all.
    transport: Literal["tcp", "ipc"] = "tcp"
    ip: str = "127.0.0.1"
    #: The hub ROUTER: engines register, clients ask for engines and shutdowns.
    hub_port: int = 0
    #: The PUB on which the controller announces engines joining and leaving.
    notify_port: int = 0
    signature_scheme: str = "hmac-sha256"
    #: The controller's process id (0 when unknown), for ``loom cluster list`` and stop.
    pid: int = 0
    #: CurveZMQ keys: every socket of the cluster encrypts and admits only holders of
    #: the client key. None: plaintext (loopback or ipc, or ``--insecure-plaintext``).
    curve: CurveKeys | None = field(default=None, repr=False)
    #: The controller process's instance id, new at each start (a restore too): engines
    #: and clients name it in their hub requests, which the hub then takes whatever
    #: their date (``kernel/protocol/_freshness.py``); "" in an older file.
    instance: str = ""
    #: The largest frame the hub takes (``LOOM_HUB_MAX_MESSAGE_SIZE``; 0: none, or an
    #: older file): engines keep their record batches under it, clients their setup
    #: (``parallel.protocol._hub_limits``).
    max_message_size: int = 0

    @staticmethod
    def new_key() -> bytes:
        return ConnectionInfo.new_key()

    @property
    def tcp_host(self) -> str:
        return f"tcp://[{self.ip}]" if ":" in self.ip else f"tcp://{self.ip}"

    @property
    def hub_url(self) -> str:
        if self.transport == "ipc":
            return f"ipc://{self.ip}/hub"
        return f"{self.tcp_host}:{self.hub_port}"

    @property
    def notify_url(self) -> str:
        if self.transport == "ipc":
            return f"ipc://{self.ip}/notify"
        return f"{self.tcp_host}:{self.notify_port}"

    @property
    def authenticates_peers(self) -> bool:
        """True when the transport itself admits only this cluster's peers (ipc in a 0700
        directory, or Curve with its allow-list, whose authenticated encryption also keeps
        every frame intact): then buffers need no digest of their own
        (``Signer.sign_buffers``; docs/architecture.md, "Security of the buffers")."""
        return self.transport == "ipc" or self.curve is not None

    def new_engine_address(self, name: str) -> str:
        """Where an engine called ``name`` binds: this host's address, or for ipc a
        socket-file prefix in the cluster's directory."""
        return f"{self.ip}/e-{name}" if self.transport == "ipc" else self.ip

    @property
    def default_path(self) -> Path:
        """Where this cluster's file lives unless told otherwise."""
        return runtime_dir() / f"loom-cluster-{self.cluster_id}.json"

    def engine_connection(
        self, address: str, ports: Mapping[str, int] | None = None
    ) -> ConnectionInfo:
        """An engine's kernel connection info: its ``address`` (an ip, or an ipc prefix),
        ``ports`` (``shell_port``...; all 0, "choose while binding", by default) and this
        cluster's transport and key."""
        ports = ports or {}
        return ConnectionInfo(
            ip=address,
            transport=self.transport,
            key=self.key,
            signature_scheme=self.signature_scheme,
            kernel_name="loom-engine",
            shell_port=ports.get("shell_port", 0),
            iopub_port=ports.get("iopub_port", 0),
            stdin_port=ports.get("stdin_port", 0),
            control_port=ports.get("control_port", 0),
            hb_port=ports.get("hb_port", 0),
            curve=self.curve,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "transport": self.transport,
            "ip": self.ip,
            "hub_port": self.hub_port,
            "notify_port": self.notify_port,
            "key": self.key.decode("utf-8"),
            "signature_scheme": self.signature_scheme,
            "pid": self.pid,
            **(self.curve.to_dict() if self.curve is not None else {}),
            **({"instance": self.instance} if self.instance else {}),
            **({"max_message_size": self.max_message_size} if self.max_message_size else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ControllerInfo:
        """Validate a parsed cluster file; unknown keys are ignored."""
        for name in ("cluster_id", "ip", "key", "signature_scheme"):
            if not isinstance(data.get(name), str):
                raise ConnectionFileError(f"{name} must be a string, got {data.get(name)!r}")
        ports = {}
        for name in ("hub_port", "notify_port"):
            value = data.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
                raise ConnectionFileError(f"{name} must be a port number, got {value!r}")
            ports[name] = value
        pid = data.get("pid", 0)
        instance = data.get("instance", "")
        limit = data.get("max_message_size", 0)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ConnectionFileError(f"max_message_size must be a size in bytes, got {limit!r}")
        transport = data.get("transport", "tcp")
        if transport not in ("tcp", "ipc"):
            raise ConnectionFileError(f"transport must be 'tcp' or 'ipc', not {transport!r}")
        return cls(
            cluster_id=data["cluster_id"],
            transport=transport,
            key=data["key"].encode("utf-8"),
            ip=data["ip"],
            signature_scheme=data["signature_scheme"],
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else 0,
            curve=CurveKeys.from_dict(data),
            instance=instance if isinstance(instance, str) else "",
            max_message_size=limit,
            **ports,
        )

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ControllerInfo:
        """Load a cluster file; raises :class:`ConnectionFileError` with the reason."""
        data = read_json_object(path, "cluster file")
        try:
            return cls.from_dict(data)
        except ConnectionFileError as exc:
            raise ConnectionFileError(f"cluster file {path}: {exc}") from None

    def write(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the cluster file (0600, atomically); :attr:`default_path` by default."""
        target = Path(path) if path is not None else self.default_path
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_json(target, self.to_dict())
        return target


def newest_cluster_file() -> Path:
    """The most recently written cluster file in the runtime directory.

    Raises :class:`ConnectionFileError` naming the directory when there is none.
    """
    directory = runtime_dir()
    files = sorted(directory.glob(CLUSTER_FILE_GLOB), key=lambda p: p.stat().st_mtime)
    if not files:
        raise ConnectionFileError(
            f"no running cluster: no {CLUSTER_FILE_GLOB} in {directory}; "
            "start one with `loom cluster start -n 4` or parallel.Cluster(n=4)"
        )
    return files[-1]
