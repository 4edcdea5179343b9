"""Connection files, as jupyter_client reads and writes them.

A connection file is a JSON object naming the transport, IP, five ports, the
HMAC key and its scheme, and optionally the kernel name. It holds a secret, so
it is created with mode 0600.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._curve_keys import CurveKeys
from ._errors import ConnectionFileError

__all__ = [
    "CHANNELS",
    "ConnectionInfo",
    "read_json_object",
    "runtime_dir",
    "write_private_json",
]

#: The five channels, in the spec's spelling; ``<channel>_port`` keys exist for each.
CHANNELS = ("shell", "iopub", "stdin", "control", "hb")

Transport = Literal["tcp", "ipc"]


def runtime_dir() -> Path:
    """The Jupyter runtime directory: ``$JUPYTER_RUNTIME_DIR`` or jupyter_core's default.

    Pure stdlib on purpose (this layer imports no third-party code); the
    rules mirror ``jupyter_core.paths.jupyter_runtime_dir``.
    """
    env = os.environ.get("JUPYTER_RUNTIME_DIR")
    if env:
        return Path(env)
    data = os.environ.get("JUPYTER_DATA_DIR")
    if data:
        return Path(data) / "runtime"
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "jupyter" / "runtime"


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Where a kernel listens and how its messages are signed."""

    ip: str = "127.0.0.1"
    transport: Transport = "tcp"
    shell_port: int = 0
    iopub_port: int = 0
    stdin_port: int = 0
    control_port: int = 0
    hb_port: int = 0
    key: bytes = field(default=b"", repr=False)
    signature_scheme: str = "hmac-sha256"
    kernel_name: str = ""
    #: CurveZMQ keys (``curve_publickey``... in the file), or None: plaintext.
    curve: CurveKeys | None = field(default=None, repr=False)

    @staticmethod
    def new_key() -> bytes:
        """A fresh random key in the form jupyter_client generates (a UUID-like hex string)."""
        return os.urandom(16).hex().encode("ascii")

    def port(self, channel: str) -> int:
        return int(getattr(self, f"{channel}_port"))

    @property
    def tcp_host(self) -> str:
        """``tcp://ip`` with an IPv6 address in brackets: the endpoint without its port."""
        return f"tcp://[{self.ip}]" if ":" in self.ip else f"tcp://{self.ip}"

    def url(self, channel: str) -> str:
        """The ZeroMQ endpoint for ``channel`` (``tcp://ip:port`` or ``ipc://ip-port``)."""
        port = self.port(channel)
        if self.transport == "tcp":
            return f"{self.tcp_host}:{port}"
        return f"ipc://{self.ip}-{port}"

    # -- JSON ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {f"{ch}_port": self.port(ch) for ch in CHANNELS}
        data.update(
            ip=self.ip,
            transport=self.transport,
            key=self.key.decode("utf-8"),
            signature_scheme=self.signature_scheme,
            kernel_name=self.kernel_name,
        )
        if self.curve is not None:
            data.update(self.curve.to_dict())
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConnectionInfo:
        """Validate a parsed connection file; unknown keys are ignored."""
        transport = data.get("transport", "tcp")
        if transport not in ("tcp", "ipc"):
            raise ConnectionFileError(f"transport must be 'tcp' or 'ipc', not {transport!r}")
        ports: dict[str, int] = {}
        for ch in CHANNELS:
            value = data.get(f"{ch}_port")
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
                raise ConnectionFileError(f"{ch}_port must be a port number, got {value!r}")
            ports[f"{ch}_port"] = value
        ip, key = data.get("ip", "127.0.0.1"), data.get("key", "")
        scheme, name = data.get("signature_scheme", "hmac-sha256"), data.get("kernel_name", "")
        for label, value in (
            ("ip", ip),
            ("key", key),
            ("signature_scheme", scheme),
            ("kernel_name", name),
        ):
            if not isinstance(value, str):
                raise ConnectionFileError(f"{label} must be a string, got {type(value).__name__}")
        return cls(
            ip=ip,
            transport=transport,
            key=key.encode("utf-8"),
            signature_scheme=scheme,
            kernel_name=name,
            curve=CurveKeys.from_dict(data),
            **ports,
        )

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ConnectionInfo:
        """Load a connection file; raises :class:`ConnectionFileError` with the reason."""
        data = read_json_object(path, "connection file")
        try:
            return cls.from_dict(data)
        except ConnectionFileError as exc:
            raise ConnectionFileError(f"connection file {path}: {exc}") from None

    def write(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write this info atomically with mode 0600 and return the path.

        Without ``path`` a fresh ``kernel-<id>.json`` is created in :func:`runtime_dir`.
        """
        if path is None:
            directory = runtime_dir()
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            target = directory / f"kernel-loom-{os.urandom(6).hex()}.json"
        else:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_json(target, self.to_dict())
        return target


def read_json_object(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """The JSON object in ``path``; raises :class:`ConnectionFileError` saying what is wrong.

    ``what`` names the file in messages ("connection file", "cluster file").
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConnectionFileError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConnectionFileError(f"{what} {path} is not valid UTF-8: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConnectionFileError(f"{what} {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConnectionFileError(f"{what} {path} must hold a JSON object")
    return data


def write_private_json(target: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``target`` atomically, readable by its owner only (0600).

    The file holds a key: mkstemp creates it 0600 before any secret is written to it, and
    a reader never sees it half-written.
    """
    import tempfile  # only writers need it; kernels that are given a file start faster

    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".connection-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
