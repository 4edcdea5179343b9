"""Inline images: the kitty graphics protocol, iTerm2's, or a file path.

Detection is by environment only (asking the terminal would need a round
trip through the tty while a prompt may own it): kitty sets ``TERM=xterm-kitty``
and ``KITTY_WINDOW_ID``; iTerm2 sets ``TERM_PROGRAM=iTerm.app`` (WezTerm
understands the iTerm2 protocol and says ``TERM_PROGRAM=WezTerm``).
``LOOM_IMAGES=kitty|iterm|file`` overrides the guess. Elsewhere, and always
in plain mode, the image is saved to a temporary file whose path is printed.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Mapping

__all__ = ["image_protocol", "render_image"]

_KITTY_CHUNK = 4096  # the protocol's maximum payload per escape sequence


def image_protocol(env: Mapping[str, str] | None = None) -> str:
    """``"kitty"``, ``"iterm"`` or ``"file"`` for the terminal described by ``env``."""
    env = os.environ if env is None else env
    forced = env.get("LOOM_IMAGES", "").lower()
    if forced in ("kitty", "iterm", "file"):
        return forced
    if env.get("TERM") == "xterm-kitty" or "KITTY_WINDOW_ID" in env:
        return "kitty"
    if env.get("TERM_PROGRAM") in ("iTerm.app", "WezTerm"):
        return "iterm"
    return "file"


def render_image(data_b64: str, mime: str, protocol: str) -> str:
    """Text that shows the base64 image ``data_b64`` (of type ``mime``).

    For ``kitty`` and ``iterm`` the text is escape sequences followed by a
    newline; for ``file`` it is ``[image/png saved to PATH]``. Only PNG can be
    sent to kitty directly (``f=100``); other types fall back to a file.
    """
    payload = "".join(data_b64.split())
    if protocol == "kitty" and mime == "image/png":
        return _kitty(payload) + "\n"
    if protocol == "iterm":
        size = len(base64.b64decode(payload))
        return f"\x1b]1337;File=inline=1;size={size};preserveAspectRatio=1:{payload}\x07\n"
    return f"[{mime} saved to {_save(payload, mime)}]\n"


def _kitty(payload: str) -> str:
    chunks = [payload[i : i + _KITTY_CHUNK] for i in range(0, len(payload), _KITTY_CHUNK)]
    out = []
    for index, chunk in enumerate(chunks):
        more = 1 if index < len(chunks) - 1 else 0
        keys = f"a=T,f=100,m={more}" if index == 0 else f"m={more}"
        out.append(f"\x1b_G{keys};{chunk}\x1b\\")
    return "".join(out)


def _save(payload: str, mime: str) -> str:
    suffix = "." + mime.split("/")[-1].split("+")[0]
    fd, path = tempfile.mkstemp(prefix="loom-", suffix=suffix)
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.b64decode(payload))
    return path
