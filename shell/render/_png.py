"""A PNG decoder in pure Python (``zlib`` and ``struct`` only), for sixel output.

:func:`decode_png` reads every standard PNG: colour types 0 (grey), 2 (RGB),
3 (palette, with ``tRNS`` alpha), 4 (grey + alpha) and 6 (RGBA), every bit
depth the specification allows, all five row filters, and Adam7 interlacing.
The result is always 8-bit RGBA (16-bit samples keep their high byte).
Ancillary chunks other than ``tRNS`` (gamma, colour profiles, text) are
ignored, as a terminal preview does not need them.

Speed comes from doing per-pixel work in C: channel planes are split and
merged with extended slices, sample conversions are ``bytes.translate``
tables, the Sub filter is an ``accumulate``/``map`` pipeline and Up is
big-integer arithmetic.
Only Average and Paeth, whose every byte depends on the one just decoded,
loop in Python, one channel at a time so the loop keeps its state in locals.

Malformed input raises :class:`PNGError` (a ``ValueError``) whose message
names the problem; images over ``max_pixels`` raise :class:`ImageTooLarge`
before any image data is decompressed, and decompression never produces more
bytes than the header's dimensions call for (a guard against zip bombs).
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import and_

__all__ = ["MAX_PIXELS", "Image", "ImageTooLarge", "PNGError", "decode_png"]

#: The default limit on width x height: 40 megapixels (160 MB as RGBA).
MAX_PIXELS = 40_000_000

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_DIMENSION = 2**31 - 1  # the specification's limit on width and height
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = (
    (0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)
)  # fmt: skip
_WHOLE_IMAGE = ((0, 0, 1, 1),)
_OPAQUE = 255
# Pixels travel as 32-bit array items so Adam7 can scatter a pass row with one
# extended-slice assignment; "I" is 4 bytes on every platform CPython supports.
_PIXEL_TYPE = "I"


class PNGError(ValueError):
    """The data is not a PNG image this decoder can read; the message says why."""


class ImageTooLarge(PNGError):
    """The image has more pixels than allowed (it is refused before decompression)."""


@dataclass(frozen=True)
class Image:
    """Decoded pixels: ``rgba`` holds 4 bytes per pixel, rows top to bottom."""

    width: int
    height: int
    rgba: bytes

    def row(self, y: int) -> bytes:
        """The RGBA bytes of row ``y``."""
        start = y * self.width * 4
        return self.rgba[start : start + self.width * 4]


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    depth: int
    color_type: int
    interlaced: bool

    @property
    def bits_per_pixel(self) -> int:
        return self.depth * _CHANNELS[self.color_type]

    @property
    def filter_unit(self) -> int:
        """Bytes between a byte and its "left" neighbour in the row filters."""
        return max(1, self.bits_per_pixel // 8)

    def stride(self, width: int) -> int:
        """Bytes in one filtered row ``width`` pixels wide (without the filter byte)."""
        return (width * self.bits_per_pixel + 7) // 8

    def passes(self) -> Iterator[tuple[int, int, int, int, int, int]]:
        """``(x0, y0, dx, dy, width, height)`` of each non-empty pass."""
        for x0, y0, dx, dy in _ADAM7 if self.interlaced else _WHOLE_IMAGE:
            width = (self.width - x0 + dx - 1) // dx
            height = (self.height - y0 + dy - 1) // dy
            if width > 0 and height > 0:
                yield x0, y0, dx, dy, width, height

    def raw_size(self) -> int:
        """Bytes of decompressed image data (rows with their filter bytes)."""
        return sum(h * (1 + self.stride(w)) for *_, w, h in self.passes())


@dataclass(frozen=True)
class _Colours:
    """What the ``PLTE`` and ``tRNS`` chunks say (raw chunk bodies)."""

    palette: bytes | None
    transparency: bytes | None


def decode_png(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image:
    """The pixels of the PNG file ``data``.

    Raises :class:`PNGError` for anything malformed or unsupported and
    :class:`ImageTooLarge` when width x height exceeds ``max_pixels``.
    """
    if not data.startswith(_SIGNATURE):
        raise PNGError("not a PNG file (bad signature)")
    chunks = _chunks(data)
    name, body = next(chunks, ("", b""))
    if name != "IHDR":
        raise PNGError("first chunk is not IHDR")
    header = _parse_header(body, max_pixels)
    palette = transparency = None
    idat: list[bytes] = []
    for name, body in chunks:
        if name == "IEND":
            break
        if name == "IDAT":
            idat.append(body)
        elif name == "PLTE":
            palette = _check_palette(body)
        elif name == "tRNS":
            transparency = body
        elif name == "IHDR":
            raise PNGError("more than one IHDR chunk")
        elif name[0].isupper():  # a critical chunk: its meaning cannot be skipped
            raise PNGError(f"unknown critical chunk {name}")
    else:
        raise PNGError("missing IEND chunk")
    if not idat:
        raise PNGError("no IDAT chunk")
    colours = _check_colours(header, _Colours(palette, transparency))
    raw = _inflate(b"".join(idat), header.raw_size())
    return Image(header.width, header.height, _assemble(raw, header, colours))


# -- chunks ---------------------------------------------------------------------------


def _chunks(data: bytes) -> Iterator[tuple[str, bytes]]:
    """``(type, body)`` of each chunk after the signature, CRCs checked."""
    pos = len(_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise PNGError("truncated chunk header")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if not kind.isalpha():
            raise PNGError(f"bad chunk type {kind!r}")
        name = kind.decode("ascii")
        end = pos + 8 + length
        if end + 4 > len(data):
            raise PNGError(f"truncated {name} chunk")
        body = data[pos + 8 : end]
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(kind + body) != crc:
            raise PNGError(f"bad CRC in {name} chunk")
        yield name, body
        pos = end + 4


def _parse_header(body: bytes, max_pixels: int) -> _Header:
    if len(body) != 13:
        raise PNGError(f"IHDR chunk has {len(body)} bytes, not 13")
    width, height, depth, color_type, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", body
    )
    if not (0 < width <= _MAX_DIMENSION and 0 < height <= _MAX_DIMENSION):
        raise PNGError(f"bad image size {width}x{height}")
    if color_type not in _DEPTHS:
        raise PNGError(f"bad colour type {color_type}")
    if depth not in _DEPTHS[color_type]:
        raise PNGError(f"bit depth {depth} is not allowed for colour type {color_type}")
    if compression != 0 or filtering != 0:
        raise PNGError(f"unknown compression ({compression}) or filter method ({filtering})")
    if interlace not in (0, 1):
        raise PNGError(f"unknown interlace method {interlace}")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} pixels, over the limit of {max_pixels / 1e6:g} megapixels"
        )
    return _Header(width, height, depth, color_type, interlace == 1)


def _check_palette(body: bytes) -> bytes:
    if not body or len(body) % 3 or len(body) > 3 * 256:
        raise PNGError(f"PLTE chunk of {len(body)} bytes is not 1 to 256 RGB entries")
    return body


def _check_colours(header: _Header, colours: _Colours) -> _Colours:
    """``colours`` with what does not apply to this colour type dropped."""
    palette, transparency = colours.palette, colours.transparency
    color_type = header.color_type
    if color_type == 3 and palette is None:
        raise PNGError("palette image without a PLTE chunk")
    if color_type in (4, 6):  # an alpha channel already; libpng ignores tRNS too
        transparency = None
    if transparency is not None:
        expected = {0: 2, 2: 6}.get(color_type)
        if expected is not None and len(transparency) != expected:
            raise PNGError(f"tRNS chunk has {len(transparency)} bytes, not {expected}")
        if color_type == 3 and palette is not None and len(transparency) > len(palette) // 3:
            raise PNGError("tRNS chunk has more entries than the palette")
    return _Colours(palette if color_type == 3 else None, transparency)


def _inflate(compressed: bytes, expected: int) -> bytes:
    """The first ``expected`` bytes ``compressed`` inflates to (never more)."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(compressed, expected)
    except zlib.error as exc:
        raise PNGError(f"corrupt IDAT data ({exc})") from None
    if len(raw) < expected:
        if inflater.eof:
            raise PNGError(f"IDAT data ends early ({len(raw)} of {expected} bytes)")
        raise PNGError("truncated IDAT data")
    return raw


# -- pixels ---------------------------------------------------------------------------


def _assemble(raw: bytes, header: _Header, colours: _Colours) -> bytes:
    """RGBA bytes of the whole image from the decompressed passes."""
    if not header.interlaced:
        return _decode_pass(raw, 0, header.width, header.height, header, colours)[0]
    image = array(_PIXEL_TYPE, bytes(4 * header.width * header.height))
    offset = 0
    for x0, y0, dx, dy, width, height in header.passes():
        rgba, offset = _decode_pass(raw, offset, width, height, header, colours)
        pixels = array(_PIXEL_TYPE, rgba)
        for j in range(height):
            start = (y0 + j * dy) * header.width
            image[start + x0 : start + header.width : dx] = pixels[j * width : (j + 1) * width]
    return image.tobytes()


def _decode_pass(
    raw: bytes, offset: int, width: int, height: int, header: _Header, colours: _Colours
) -> tuple[bytes, int]:
    """RGBA of the ``width`` x ``height`` (sub-)image at ``offset``, and the offset after it."""
    stride = header.stride(width)
    rows = _unfilter(raw, offset, height, stride, header.filter_unit)
    return _to_rgba(rows, width, height, header, colours), offset + height * (1 + stride)


def _unfilter(raw: bytes, offset: int, height: int, stride: int, unit: int) -> bytes:
    """The rows at ``offset``, filters undone and filter bytes dropped."""
    out = bytearray()
    prev = bytes(stride)
    masks = _ByteMasks(stride)
    for y in range(height):
        kind = raw[offset]
        line = raw[offset + 1 : offset + 1 + stride]
        offset += 1 + stride
        if kind == 0:
            cur = line
        elif kind == 1:
            cur = _unsub(line, unit)
        elif kind == 2:
            cur = masks.add_bytewise(line, prev)
        elif kind == 3:
            cur = _unaverage(line, prev, unit)
        elif kind == 4:
            cur = _unpaeth(line, prev, unit)
        else:
            raise PNGError(f"bad filter type {kind} in row {y}")
        out += cur
        prev = cur
    return bytes(out)


def _unsub(line: bytes, unit: int) -> bytes:
    # Sub adds the byte one pixel to the left: per channel, a running sum mod 256.
    out = bytearray(line)
    for channel in range(unit):
        sums = accumulate(line[channel::unit])
        out[channel::unit] = bytes(map(and_, sums, repeat(255)))
    return bytes(out)


class _ByteMasks:
    """Adds byte strings of one length byte by byte (mod 256), as single big integers.

    The Up filter is the most common one (a row like the row above), and
    this is some 20 times faster than adding byte pairs with ``map``: the low
    7 bits of each byte are added with the top bits masked off, so no carry
    crosses into the next byte, and each top bit is then set by XOR.
    """

    def __init__(self, length: int) -> None:
        self.length = length
        self.low = int.from_bytes(b"\x7f" * length, "big")
        self.high = int.from_bytes(b"\x80" * length, "big")

    def add_bytewise(self, one: bytes, other: bytes) -> bytes:
        a, b = int.from_bytes(one, "big"), int.from_bytes(other, "big")
        total = ((a & self.low) + (b & self.low)) ^ ((a ^ b) & self.high)
        return total.to_bytes(self.length, "big")


def _unaverage(line: bytes, prev: bytes, unit: int) -> bytes:
    out = bytearray(len(line))
    for channel in range(unit):
        left = 0
        decoded = []
        for x, up in zip(line[channel::unit], prev[channel::unit], strict=True):
            left = (x + ((left + up) >> 1)) & 255
            decoded.append(left)
        out[channel::unit] = bytes(decoded)
    return bytes(out)


def _unpaeth(line: bytes, prev: bytes, unit: int) -> bytes:
    # Paeth predicts from left (a), up (b) and up-left (c): whichever is closest
    # to a + b - c, preferring a, then b. The distances simplify to |b - c|,
    # |a - c| and |a + b - 2c|.
    out = bytearray(len(line))
    for channel in range(unit):
        a = c = 0
        decoded = []
        for x, b in zip(line[channel::unit], prev[channel::unit], strict=True):
            if b == c:  # flat above: the prediction is a (common on plain backgrounds)
                a = (x + a) & 255
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - c - c)
                if pa <= pb and pa <= pc:
                    a = (x + a) & 255
                elif pb <= pc:
                    a = (x + b) & 255
                else:
                    a = (x + c) & 255
            decoded.append(a)
            c = b
        out[channel::unit] = bytes(decoded)
    return bytes(out)


def _to_rgba(rows: bytes, width: int, height: int, header: _Header, colours: _Colours) -> bytes:
    """RGBA bytes for unfiltered ``rows`` of samples."""
    count = width * height
    depth, color_type = header.depth, header.color_type
    if depth < 8:
        rows = _unpack(rows, width, height, header.stride(width), depth)
    alpha = (
        _key_alpha(rows, colours.transparency, depth, count)
        if colours.transparency is not None and color_type in (0, 2)
        else None
    )
    if depth == 16:
        rows = rows[0::2]  # each sample's high byte
    if color_type == 3:
        assert colours.palette is not None  # _check_colours made sure
        return _from_palette(rows, colours.palette, colours.transparency)
    if color_type == 0:
        grey = rows.translate(_grey_scale(depth)) if depth < 8 else rows
        return _interleave((grey, grey, grey, alpha or _opaque(count)))
    if color_type == 2:
        return _interleave((rows[0::3], rows[1::3], rows[2::3], alpha or _opaque(count)))
    if color_type == 4:
        return _interleave((rows[0::2], rows[0::2], rows[0::2], rows[1::2]))
    return rows  # colour type 6 is RGBA already


def _unpack(rows: bytes, width: int, height: int, stride: int, depth: int) -> bytes:
    """One byte per sample from ``depth``-bit samples packed in padded rows."""
    table = _unpack_table(depth)
    return b"".join(
        b"".join(map(table.__getitem__, rows[y * stride : (y + 1) * stride]))[:width]
        for y in range(height)
    )


def _unpack_table(depth: int) -> list[bytes]:
    """For each byte value, its samples of ``depth`` bits, most significant first."""
    per_byte = 8 // depth
    mask = (1 << depth) - 1
    shifts = [8 - depth * (i + 1) for i in range(per_byte)]
    return [bytes((value >> shift) & mask for shift in shifts) for value in range(256)]


def _grey_scale(depth: int) -> bytes:
    """A translate table stretching ``depth``-bit grey levels to 0-255."""
    top = (1 << depth) - 1
    return bytes(value * 255 // top for value in range(top + 1)) + bytes(255 - top)


def _key_alpha(samples: bytes, key: bytes, depth: int, count: int) -> bytes:
    """Alpha for grey/RGB ``tRNS``: 0 where a pixel equals the key colour, else 255.

    ``samples`` are one byte per sample (depth <= 8) or two (depth 16); the
    key holds one 16-bit value per channel, of which 8-or-fewer-bit images use
    the low bits.
    """
    low_bits = (1 << min(depth, 8)) - 1
    key_bytes = key if depth == 16 else bytes(value & low_bits for value in key[1::2])
    step = len(key_bytes)
    matches = b"\x01" * count
    for index, value in enumerate(key_bytes):
        equal = samples[index::step].translate(_equals_table(value))
        matches = bytes(map(and_, matches, equal))
    return matches.translate(b"\xff\x00" + bytes(254))


def _equals_table(value: int) -> bytes:
    """A translate table giving 1 for ``value`` and 0 for every other byte."""
    return bytes(value) + b"\x01" + bytes(255 - value)


def _from_palette(indices: bytes, palette: bytes, transparency: bytes | None) -> bytes:
    entries = len(palette) // 3
    if indices and max(indices) >= entries:
        raise PNGError(f"palette index {max(indices)} out of range (PLTE has {entries} entries)")
    alphas = (transparency or b"") + b"\xff" * (entries - len(transparency or b""))
    planes = [
        indices.translate(_padded(plane))
        for plane in (palette[0::3], palette[1::3], palette[2::3], alphas)
    ]
    return _interleave(planes)


def _padded(table: bytes) -> bytes:
    return table + bytes(256 - len(table))


def _opaque(count: int) -> bytes:
    return bytes([_OPAQUE]) * count


def _interleave(planes: Sequence[bytes]) -> bytes:
    """Pixels from channel planes: ``[r, g, b, a]`` -> ``rgbargba...``."""
    out = bytearray(len(planes[0]) * len(planes))
    for index, plane in enumerate(planes):
        out[index :: len(planes)] = plane
    return bytes(out)
