"""Small files that claim a lot of decoding work, and honest images at the pixel limit.

Each builder returns the bytes a client could upload. The TIFFs are written field by field
because no encoder would produce them: that is the point of a bomb.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

SHORT, LONG = 3, 4
DEFLATE, PHOTOMETRIC_GRAY, PHOTOMETRIC_RGB = 8, 1, 2


def _tiff(entries: dict[int, tuple[int, list[int]]], payload: bytes) -> bytes:
    """A little-endian TIFF with one IFD of ``entries`` (tag -> (type, values)) and ``payload``.

    The payload follows the header; the IFD follows the payload. Offsets in ``entries`` that
    point at the payload use the value 8.
    """
    header_size = 8
    ifd_offset = header_size + len(payload) + (len(payload) % 2)
    count = len(entries)
    extra_at = ifd_offset + 2 + 12 * count + 4
    ifd, extra = b"", b""
    for tag in sorted(entries):
        kind, values = entries[tag]
        fmt = "H" if kind == SHORT else "I"
        packed = struct.pack(f"<{len(values)}{fmt}", *values)
        if len(packed) <= 4:
            ifd += struct.pack("<HHI", tag, kind, len(values)) + packed.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, kind, len(values), extra_at + len(extra))
            extra += packed
    body = struct.pack("<H", count) + ifd + b"\0\0\0\0" + extra
    head = b"II" + struct.pack("<HI", 42, ifd_offset)
    return head + payload + (b"\0" if len(payload) % 2 else b"") + body


def _common(width: int, height: int, rgb: bool) -> dict[int, tuple[int, list[int]]]:
    samples = 3 if rgb else 1
    return {
        256: (LONG, [width]),
        257: (LONG, [height]),
        258: (SHORT, [8] * samples),
        259: (SHORT, [DEFLATE]),
        262: (SHORT, [PHOTOMETRIC_RGB if rgb else PHOTOMETRIC_GRAY]),
        277: (SHORT, [samples]),
        284: (SHORT, [1]),
    }


def tiff_tile_bomb(
    tile: int = 16384, size: int = 16, rgb: bool = True, complete: bool = False
) -> bytes:
    """A ``size``-square TIFF stored in one ``tile``-square deflate tile (~150 bytes).

    libtiff allocates a whole tile before it decodes one: 768 MiB for 16384 px RGB.
    ``complete`` stores the whole (black) tile: an honest tiled TIFF.
    """
    payload = zlib.compress(bytes(tile * tile * (3 if rgb else 1) if complete else 64))
    entries = _common(size, size, rgb)
    entries |= {
        322: (LONG, [tile]),
        323: (LONG, [tile]),
        324: (LONG, [8]),
        325: (LONG, [len(payload)]),
    }
    return _tiff(entries, payload)


def tiff_strip_bomb(width: int = 16, height: int = 16, rows_per_strip: int = 1 << 30) -> bytes:
    """A TIFF whose one deflate strip claims ``rows_per_strip`` rows of a small image."""
    payload = zlib.compress(bytes(64))
    entries = _common(width, height, True)
    entries |= {
        273: (LONG, [8]),
        278: (LONG, [rows_per_strip]),
        279: (LONG, [len(payload)]),
    }
    return _tiff(entries, payload)


def tiff_strips(width: int, height: int, rows_per_strip: int) -> bytes:
    """An honest deflate RGB TIFF in strips of ``rows_per_strip`` rows, written by hand."""
    rows = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    strips = [
        zlib.compress(rows[y : y + rows_per_strip].tobytes())
        for y in range(0, height, rows_per_strip)
    ]
    offsets, at = [], 8
    for strip in strips:
        offsets.append(at)
        at += len(strip)
    entries = _common(width, height, True)
    entries |= {
        273: (LONG, offsets),
        278: (LONG, [rows_per_strip]),
        279: (LONG, [len(s) for s in strips]),
    }
    return _tiff(entries, b"".join(strips))


def many_frames(fmt: str, frames: int = 2000, size: int = 64) -> bytes:
    """An animation of ``frames`` distinct frames (GIF or WebP); only frame 0 is ever needed."""
    images = [Image.new("RGB", (size, size), (i % 256, (i * 7) % 256, 0)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format=fmt, save_all=True, append_images=images[1:], duration=10)
    return buffer.getvalue()


def flat(
    mode: str, pixels: int, fmt: str = "PNG", value: int | tuple[int, ...] = 0, **params: object
) -> bytes:
    """A 4:3 image of ``mode`` with about ``pixels`` pixels: compresses to almost nothing,
    so it costs the decoder everything while costing the client nothing."""
    width = int((pixels * 4 / 3) ** 0.5)
    height = pixels // width
    buffer = io.BytesIO()
    Image.new(mode, (width, height), value).save(buffer, format=fmt, **params)
    return buffer.getvalue()
