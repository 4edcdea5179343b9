"""Buffer digests (Signer.sign_buffers / verify_buffers): authenticating binary frames."""

from __future__ import annotations

import pytest

from kernel.protocol import SignatureError, Signer


def test_a_digest_verifies_its_buffers_and_nothing_else() -> None:
    signer = Signer(b"key")
    digest = signer.sign_buffers([b"ab", memoryview(b"cd")])
    signer.verify_buffers([b"ab", b"cd"], digest)
    for tampered in ([b"ab", b"ce"], [b"abc", b"d"], [b"ab"], [b"ab", b"cd", b""]):
        with pytest.raises(SignatureError, match="do not match"):
            signer.verify_buffers(tampered, digest)


def test_another_key_or_a_missing_digest_is_refused() -> None:
    digest = Signer(b"other").sign_buffers([b"x"])
    with pytest.raises(SignatureError):
        Signer(b"key").verify_buffers([b"x"], digest)
    with pytest.raises(SignatureError, match="no digest"):
        Signer(b"key").verify_buffers([b"x"], None)


def test_without_a_key_nothing_is_signed_or_checked() -> None:
    signer = Signer(b"")
    assert signer.sign_buffers([b"x"]) == ""
    signer.verify_buffers([b"x"], None)
