"""PNG to 8-bit RGBA pixels for the sixel encoder, decoded by Pillow.

Pillow is optional: it is imported at the first PNG that must be decoded
(never at start-up), and without it :func:`decode_png` raises
:class:`ImageUnreadable`, so the image is saved to a file instead, as on a
terminal without graphics.

Every standard PNG is read: grey, RGB, palette, grey + alpha and RGBA, at
every bit depth, interlaced or not; 16-bit samples keep their high byte.
Where Pillow's RGBA conversion departs from the PNG specification, this
module corrects it (checked by ``tests/shell/render/test_images.py`` against
pixels derived from the specification):

- 16-bit grey: Pillow clips samples to 255 instead of keeping the high byte;
- a grey ``tRNS`` key at 2 or 4 bits is compared with samples Pillow has
  already scaled to 8 bits, so it would match nothing: it is scaled too;
- a 16-bit RGB ``tRNS`` key is compared with 8-bit pixels: it is cut to its
  high bytes, so colours within 1/256 of the key are transparent too (Pillow
  keeps no 16-bit RGB, so the exact test is out of reach; in a terminal
  preview the difference cannot be seen).
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image as PillowImage

__all__ = ["ImageUnreadable", "Pixels", "decode_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GREY, _RGB = 0, 2  # PNG colour types that may carry a tRNS key colour
_OPAQUE, _CLEAR = 255, 0


class ImageUnreadable(Exception):
    """The PNG cannot be shown as pixels; the message says why (for the user)."""


@dataclass(frozen=True, slots=True)
class Pixels:
    """Decoded pixels: ``rgba`` holds 4 bytes per pixel, rows top to bottom."""

    width: int
    height: int
    rgba: bytes


def decode_png(data: bytes, *, max_pixels: int) -> Pixels:
    """``data`` (a PNG file) as 8-bit RGBA pixels.

    Raises :class:`ImageUnreadable` if ``data`` is not a PNG, is damaged, has
    more than ``max_pixels`` pixels (checked in the header, before Pillow is
    imported or anything is decompressed), or Pillow is not installed.
    """
    _check_header(data, max_pixels)
    try:
        from PIL import Image, UnidentifiedImageError  # here: ~50 ms kept off start-up
    except ImportError as exc:
        raise ImageUnreadable("Pillow is not installed") from exc
    try:
        with warnings.catch_warnings():
            # Over Pillow's own limit (callers allowing more than 89 Mpx): refuse, not warn.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                image.load()
                return Pixels(image.width, image.height, _rgba(image, data[24], data[25]))
    except UnidentifiedImageError as exc:
        raise ImageUnreadable("damaged PNG (Pillow cannot identify it)") from exc
    # What Pillow raises for a damaged PNG: OSError (truncation, zlib, an unknown
    # filter), SyntaxError (chunks), ValueError (short IHDR or tRNS), EOFError and
    # struct.error (chunk reads, animated PNGs), and its decompression-bomb guard.
    except (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        struct.error,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise ImageUnreadable(f"damaged PNG ({exc})") from exc


def _check_header(data: bytes, max_pixels: int) -> None:
    """Refuse what is not a PNG, or is too large by its IHDR (always the first chunk)."""
    if not data.startswith(_SIGNATURE):
        raise ImageUnreadable("not a PNG file (bad signature)")
    if data[12:16] == b"IHDR" and len(data) >= 24:  # else Pillow will say it is damaged
        width, height = struct.unpack(">II", data[16:24])
        if width * height > max_pixels:
            raise ImageUnreadable(
                f"image is {width}x{height} pixels, "
                f"over the limit of {max_pixels / 1e6:g} megapixels"
            )


def _rgba(image: PillowImage, depth: int, colour_type: int) -> bytes:
    """The loaded ``image`` as RGBA bytes; ``depth`` and ``colour_type`` are its IHDR's."""
    key: Any = image.info.get("transparency")
    if image.mode in ("I", "I;16", "I;16B"):  # 16-bit grey
        return _grey16_rgba(image, key)
    if key is not None and colour_type == _GREY and depth < 8 and key < (1 << depth):
        image.info["transparency"] = key * 255 // ((1 << depth) - 1)
    elif key is not None and colour_type == _RGB and depth == 16:
        image.info["transparency"] = tuple(value >> 8 for value in key)
    return image.convert("RGBA").tobytes()


def _grey16_rgba(image: PillowImage, key: int | None) -> bytes:
    """16-bit grey as RGBA: each sample's high byte; alpha 0 where it equals ``key``."""
    from PIL import Image

    samples = image.convert("I").tobytes("raw", "I;16B")  # big-endian: high byte first
    high, low = samples[0::2], samples[1::2]
    grey = Image.frombytes("L", image.size, high)
    alpha = bytes([_OPAQUE]) * len(high)
    if isinstance(key, int):
        # 1 where a byte equals the key's, else 0; both bytes must match.
        hits = int.from_bytes(high.translate(_equals(key >> 8)), "big") & int.from_bytes(
            low.translate(_equals(key & 0xFF)), "big"
        )
        clear = bytes([_OPAQUE, _CLEAR]) + bytes(254)
        alpha = hits.to_bytes(len(high), "big").translate(clear)
    bands = (grey, grey, grey, Image.frombytes("L", image.size, alpha))
    return Image.merge("RGBA", bands).tobytes()


def _equals(value: int) -> bytes:
    """A ``bytes.translate`` table mapping ``value`` to 1 and every other byte to 0."""
    return bytes(value) + b"\x01" + bytes(255 - value)
