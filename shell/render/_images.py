"""Inline images: the kitty graphics protocol, iTerm2's, sixel, or a file path.

Detection is by environment only (asking the terminal would need a round
trip through the tty while a prompt may own it): kitty sets ``TERM=xterm-kitty``
and ``KITTY_WINDOW_ID``; iTerm2 sets ``TERM_PROGRAM=iTerm.app`` (WezTerm
understands the iTerm2 protocol and says ``TERM_PROGRAM=WezTerm``). Sixel is
assumed where it works out of the box: foot, mlterm, contour and yaft (by
``TERM``), Konsole 22.04 or later (``KONSOLE_VERSION``) and Windows Terminal
(``WT_SESSION``). The last two variables are inherited from the outer
terminal, so they are not trusted inside tmux or screen, which may not pass
sixels through (and would then show nothing at all, not even a path).
``LOOM_IMAGES=kitty|iterm|sixel|file`` overrides the guess. Elsewhere, and
always in plain mode, the image is saved to a temporary file whose path is
printed; those files are deleted when the console exits unless
``LOOM_IMAGE_DIR`` names a directory to keep them in (:class:`SavedImages`).

Sixel needs pixels, so PNGs are decoded (by Pillow, :mod:`._pixels`) and
re-encoded (:mod:`._sixel`) here; a PNG that cannot be decoded (or any PNG,
when Pillow is not installed) is saved to a file instead, with the reason.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import tempfile
from collections.abc import Mapping

__all__ = ["SavedImages", "image_protocol", "render_image", "saved_images"]

_KITTY_CHUNK = 4096  # the protocol's maximum payload per escape sequence
_PROTOCOLS = ("kitty", "iterm", "sixel", "file")
_SIXEL_TERMS = ("foot", "mlterm", "contour", "yaft")  # TERM prefixes, e.g. foot-extra
_KONSOLE_SIXEL = 220400  # KONSOLE_VERSION is YYMMPP; sixel arrived in 22.04
# Decoding and encoding run on the console's only thread; encoding, in Python, takes a
# few hundred ms per megapixel for a figure: larger images are saved to a file rather
# than freeze the prompt.
_SIXEL_MAX_PIXELS = 4_000_000


def image_protocol(env: Mapping[str, str] | None = None) -> str:
    """``"kitty"``, ``"iterm"``, ``"sixel"`` or ``"file"`` for the terminal described by ``env``."""
    env = os.environ if env is None else env
    forced = env.get("LOOM_IMAGES", "").lower()
    if forced in _PROTOCOLS:
        return forced
    if env.get("TERM") == "xterm-kitty" or "KITTY_WINDOW_ID" in env:
        return "kitty"
    if env.get("TERM_PROGRAM") in ("iTerm.app", "WezTerm"):
        return "iterm"
    if env.get("TERM", "").startswith(_SIXEL_TERMS):
        return "sixel"
    if not _multiplexed(env) and (_konsole_with_sixel(env) or "WT_SESSION" in env):
        return "sixel"
    return "file"


def _multiplexed(env: Mapping[str, str]) -> bool:
    """Whether tmux or screen sits between us and the terminal."""
    return "TMUX" in env or "STY" in env or env.get("TERM", "").startswith(("screen", "tmux"))


def _konsole_with_sixel(env: Mapping[str, str]) -> bool:
    version = env.get("KONSOLE_VERSION", "")
    return version.isdigit() and int(version) >= _KONSOLE_SIXEL


def render_image(data_b64: str, mime: str, protocol: str) -> str:
    """Text that shows the base64 image ``data_b64`` (of type ``mime``).

    For ``kitty``, ``iterm`` and ``sixel`` the text is escape sequences
    followed by a newline; for ``file`` it is ``[image/png saved to PATH]``.
    Only PNG can be sent to kitty directly (``f=100``) or decoded for sixel;
    other types fall back to a file, and so does a PNG the sixel encoder
    cannot read (``[image/png saved to PATH (not shown inline: REASON)]``).
    Data that is not base64 is neither shown nor saved: one line says so.
    """
    payload = "".join(data_b64.split())
    try:
        raw = base64.b64decode(payload, validate=True)
    except ValueError:  # binascii.Error: what a kernel sent is not base64
        return f"[{mime} not shown: its data is not valid base64]\n"
    if protocol == "kitty" and mime == "image/png":
        return _kitty(payload) + "\n"
    if protocol == "iterm":
        size = len(raw)
        return f"\x1b]1337;File=inline=1;size={size};preserveAspectRatio=1:{payload}\x07\n"
    if protocol == "sixel" and mime == "image/png":
        from ._pixels import ImageUnreadable, decode_png  # on first use: kept out of start-up
        from ._sixel import encode_sixel

        try:
            image = decode_png(raw, max_pixels=_SIXEL_MAX_PIXELS)
        except ImageUnreadable as exc:
            return f"[{mime} saved to {_save(raw, mime)} (not shown inline: {exc})]\n"
        return encode_sixel(image.width, image.height, image.rgba) + "\n"
    return f"[{mime} saved to {_save(raw, mime)}]\n"


def _kitty(payload: str) -> str:
    chunks = [payload[i : i + _KITTY_CHUNK] for i in range(0, len(payload), _KITTY_CHUNK)]
    out = []
    for index, chunk in enumerate(chunks):
        more = 1 if index < len(chunks) - 1 else 0
        keys = f"a=T,f=100,m={more}" if index == 0 else f"m={more}"
        out.append(f"\x1b_G{keys};{chunk}\x1b\\")
    return "".join(out)


def _save(raw: bytes, mime: str) -> str:
    suffix = "." + mime.split("/")[-1].split("+")[0]
    fd, path = tempfile.mkstemp(prefix="loom-", suffix=suffix, dir=saved_images.directory())
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    return path


class SavedImages:
    """Where images shown as a path are saved, and their removal at exit.

    Without ``LOOM_IMAGE_DIR`` they go to a private temporary directory
    (``loom-images-*``), made at the first image and removed with everything
    in it when the process exits (:func:`atexit`: also after Ctrl-D, ``exit``,
    SIGTERM or SIGHUP, which end the console normally). With
    ``LOOM_IMAGE_DIR=DIR`` the user has asked to keep them: they are saved in
    ``DIR`` (created if needed) and never removed.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = env
        self._temporary: str | None = None

    def directory(self) -> str:
        """The directory for the next image (made if needed)."""
        env = os.environ if self._env is None else self._env
        kept = env.get("LOOM_IMAGE_DIR", "")
        if kept:
            os.makedirs(kept, exist_ok=True)
            return kept
        if self._temporary is None or not os.path.isdir(self._temporary):
            self._temporary = tempfile.mkdtemp(prefix="loom-images-")
            atexit.register(self.remove)
        return self._temporary

    def remove(self) -> None:
        """Delete the temporary directory and the images in it (kept ones stay)."""
        directory, self._temporary = self._temporary, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
            atexit.unregister(self.remove)


#: The process's images (the console is one process with one renderer).
saved_images = SavedImages()
