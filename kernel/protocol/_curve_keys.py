"""CurveZMQ key material as connection and cluster files carry it (pure: no zmq here).

A Curve-secured cluster has two keypairs, both Z85 text (40 characters per key):

- the *server* keypair, which every listening socket (the controller's hub and
  notification PUB, each engine's five kernel sockets) presents; a peer must know its
  public key to connect at all, and learns nothing without it;
- the *client* keypair, which every connecting socket (clients, engines registering,
  the controller's heartbeats) presents; listeners admit only this public key (the ZAP
  allow-list, ``kernel.transport._curve``).

Both live in the cluster file (0600 from creation). A peer's copy may lack a secret it
does not need: a client's view of an engine has no ``server_secret``.

The keys are generated with libzmq (``kernel.transport._curve.new_curve_keys``); this
module only validates and (de)serializes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConnectionFileError

__all__ = ["Z85_KEY_LENGTH", "CurveKeys", "is_private_address"]

#: A 32-byte Curve25519 key in Z85 text.
Z85_KEY_LENGTH = 40

_Z85 = frozenset(
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)

#: The connection-file names, as jupyter_client >= 8.10 spells the server's pair
#: (``curve_publickey``/``curve_secretkey``), and Loom's for the client pair.
_FIELDS = {
    "server_public": "curve_publickey",
    "server_secret": "curve_secretkey",
    "client_public": "loom_curve_client_publickey",
    "client_secret": "loom_curve_client_secretkey",
}


def _check(name: str, value: bytes) -> None:
    if value and (len(value) != Z85_KEY_LENGTH or not set(value) <= _Z85):
        raise ConnectionFileError(f"{name} must be a {Z85_KEY_LENGTH}-character Z85 Curve key")


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """A cluster's (or kernel's) Curve keys; empty bytes where a copy lacks one."""

    server_public: bytes
    server_secret: bytes = field(default=b"", repr=False)
    client_public: bytes = b""
    client_secret: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not self.server_public:
            raise ConnectionFileError(f"{_FIELDS['server_public']} is missing")
        for name, key in _FIELDS.items():
            _check(key, getattr(self, name))
        if bool(self.client_public) != bool(self.client_secret):
            raise ConnectionFileError("the Curve client keypair needs both its keys")

    @property
    def can_serve(self) -> bool:
        """Whether these keys let a process listen (it holds the server's secret)."""
        return bool(self.server_secret)

    def client_view(self) -> CurveKeys:
        """What a connecting peer needs: everything but the server's secret."""
        return CurveKeys(self.server_public, b"", self.client_public, self.client_secret)

    def to_dict(self) -> dict[str, str]:
        return {
            key: getattr(self, name).decode("ascii")
            for name, key in _FIELDS.items()
            if getattr(self, name)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CurveKeys | None:
        """The keys in a parsed file, or None when it carries none (plaintext)."""
        if data.get(_FIELDS["server_public"]) is None:
            return None
        values: dict[str, bytes] = {}
        for name, key in _FIELDS.items():
            value = data.get(key)
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise ConnectionFileError(f"{key} must be a string, got {type(value).__name__}")
            values[name] = value.encode("ascii", "replace")
        return cls(**values)


def is_private_address(transport: str, ip: str) -> bool:
    """Whether only this machine can reach ``ip``: ipc, or a loopback address.

    There the transport needs no Curve (the cluster's files are owner-only and every
    frame is signed); anywhere else (a host address, ``0.0.0.0``, ``*``, a name that is
    not ``localhost``) other machines may reach the sockets.
    """
    if transport == "ipc":
        return True
    if ip == "localhost":
        return True
    import ipaddress  # only launchers ask; a kernel starting up does not pay for it

    try:
        return ipaddress.ip_address(ip.strip("[]")).is_loopback
    except ValueError:
        return False
