"""Message signing and replay protection (messaging spec, "The Wire Protocol").

The signature is the hex HMAC of the four JSON frames, in order, keyed with the
connection's ``key``. An empty key means messages are unsigned and the signature
frame is ``b""``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol

from ._errors import ReplayedMessage, SignatureError

__all__ = ["DEFAULT_REPLAY_HISTORY", "Signer"]

#: How many recent signatures a receiver remembers to reject replays. Bounded so
#: a long-lived kernel does not grow without limit (jupyter_client keeps 65536 too).
DEFAULT_REPLAY_HISTORY = 1 << 16


class Signer:
    """Signs outgoing frames and verifies incoming ones.

    Raises :class:`SignatureError` at construction for an unknown scheme (the
    spec names schemes ``hmac-<hashlib name>``), and from :meth:`verify` for a
    wrong signature or a replay.
    """

    __slots__ = ("_digest", "_key", "_keyed", "_seen", "_seen_limit", "scheme")

    def __init__(
        self,
        key: bytes,
        scheme: str = "hmac-sha256",
        *,
        replay_history: int = DEFAULT_REPLAY_HISTORY,
    ) -> None:
        prefix, _, digest_name = scheme.partition("-")
        if prefix != "hmac" or not _is_hmac_digest(digest_name):
            raise SignatureError(
                f"unknown signature scheme {scheme!r}; expected 'hmac-<hash>' such as 'hmac-sha256'"
            )
        self.scheme = scheme
        self._key = key
        self._digest = digest_name
        #: A MAC keyed once and copied per message: keying it (OpenSSL 3 looks the digest
        #: up each time) and the hmac module's Python wrapper were half of a signature.
        self._keyed = _keyed_mac(key, digest_name) if key else None
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._seen_limit = replay_history

    @property
    def key(self) -> bytes:
        return self._key

    @property
    def replay_history(self) -> int:
        return self._seen_limit

    @property
    def is_signing(self) -> bool:
        """False when the key is empty: messages go out unsigned and are not checked."""
        return bool(self._key)

    def sign(self, frames: Iterable[bytes]) -> bytes:
        """The hex signature for the four JSON frames, or ``b""`` when unsigned."""
        if self._keyed is None:
            return b""
        mac = self._keyed.copy()
        for frame in frames:
            mac.update(frame)
        return mac.hexdigest().encode("ascii")

    def sign_buffers(self, buffers: Iterable[bytes | memoryview]) -> str:
        """An HMAC (hex) over binary ``buffers``, or ``""`` when unsigned.

        The Jupyter signature covers only the four JSON frames; a sender that wants its
        buffers authenticated (the parallel layer's pickles) puts this digest in the
        (signed) metadata and the receiver checks it with :meth:`verify_buffers`. Each
        buffer is length-prefixed, so frames cannot be re-split without detection.
        """
        if self._keyed is None:
            return ""
        mac = self._keyed.copy()
        mac.update(_BUFFERS_DOMAIN)
        for buffer in buffers:
            view = memoryview(buffer)
            mac.update(view.nbytes.to_bytes(8, "big"))
            mac.update(view)
        return mac.hexdigest()

    def verify_buffers(self, buffers: Iterable[bytes | memoryview], digest: object) -> None:
        """Check :meth:`sign_buffers`' digest in constant time; :class:`SignatureError` if wrong."""
        if not self._key:
            return
        if not isinstance(digest, str) or not digest:
            raise SignatureError(
                "the message's buffers carry no digest but this connection has a key"
            )
        if not hmac.compare_digest(digest, self.sign_buffers(buffers)):
            raise SignatureError("the message's buffers do not match their digest")

    def verify(self, signature: bytes, frames: Iterable[bytes]) -> None:
        """Check ``signature`` in constant time and remember it to reject replays."""
        if not self._key:
            return
        if not signature:
            raise SignatureError("message is unsigned but this connection has a key")
        expected = self.sign(frames)
        if not hmac.compare_digest(signature, expected):
            raise SignatureError("invalid HMAC signature")
        if signature in self._seen:
            raise ReplayedMessage("signature was already used (replayed message)")
        self._seen[signature] = None
        if len(self._seen) > self._seen_limit:
            self._seen.popitem(last=False)


_BUFFERS_DOMAIN = b"loom-buffers-v1\0"


class _Mac(Protocol):
    def copy(self) -> _Mac: ...
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


def _keyed_mac(key: bytes, digest: str) -> _Mac:
    """An HMAC keyed with ``key``, to be copied per message (same digests as ``hmac.new``):
    OpenSSL's as a C object where it has the digest, without the hmac module's Python layer."""
    try:
        from _hashlib import hmac_new
    except ImportError:  # a Python built without OpenSSL
        return hmac.new(key, digestmod=digest)
    try:
        return hmac_new(key, digestmod=digest)
    except ValueError:  # a digest OpenSSL lacks (UnsupportedDigestmodError): hmac has its own
        return hmac.new(key, digestmod=digest)


def _is_hmac_digest(name: str) -> bool:
    """True if ``name`` is a hashlib digest HMAC can use.

    ``hashlib.algorithms_available`` also lists extendable-output functions
    (``shake_128``) whose ``hexdigest`` needs a length; HMAC cannot use them, and
    accepting them here would make every later sign/verify raise ``ValueError``.
    """
    if name not in hashlib.algorithms_available:
        return False
    try:
        hmac.new(b"probe", digestmod=name).hexdigest()
    except (TypeError, ValueError):
        return False
    return True
