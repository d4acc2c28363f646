"""What decoding an image will cost in memory, read from its header before any pixel is decoded.

The pixel limit bounds the image, not the decoder: libtiff allocates a whole tile or strip
before it decodes a byte of it (a 158-byte TIFF can ask for 768 MiB), libwebp keeps two
RGBA canvases beside the frame it returns, and a progressive JPEG holds every DCT
coefficient of the full-size image however small the draft it is decoded to. Each cost
below is the largest buffer the format's decoder is known to allocate, so a file is
refused before the allocation, not after it.
"""

from __future__ import annotations

import math
import struct

from PIL import Image

from service.errors import ImageTooLarge, InvalidImage

MB = 1 << 20
# A tile may take twice the memory of the image it belongs to (one tile padding a whole
# image), or this, whichever is larger: 1024x1024 RGBA tiles on a small image are
# legitimate, 16384x16384 ones are not.
MIN_CHUNK_BYTES = 4 * MB
# libwebp's animation decoder: the canvas, the previous frame's canvas and the copy of the
# frame Pillow takes, 4 bytes per pixel each (measured: 16 B/px with Pillow's own image).
WEBP_WORK_PER_PIXEL = 12
TIFF_TILE_WIDTH, TIFF_TILE_LENGTH, TIFF_ROWS_PER_STRIP = 322, 323, 278
TIFF_BITS_PER_SAMPLE, TIFF_COMPRESSION, TIFF_PHOTOMETRIC, TIFF_PLANAR = 258, 259, 262, 284
YCBCR, NEW_JPEG = 6, 7


def pixel_bytes(mode: str) -> int:
    """Bytes per pixel of Pillow's in-memory image: 1, 2 for 16-bit gray, else 4 (RGB too)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def check_webp_canvas(data: bytes, name: str, max_pixels: int) -> None:
    """WebP's decoder allocates its canvas while the file is opened, so check its size first."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return
    size = _webp_size(data)
    if size and size[0] * size[1] > max_pixels:
        raise ImageTooLarge(
            f"{name}: {size[0]}x{size[1]} is {size[0] * size[1]} pixels, "
            f"more than the limit of {max_pixels}"
        )


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size from the first chunk (VP8X, VP8L or VP8), as libwebp reads it."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return (
            int.from_bytes(data[24:27], "little") + 1,
            int.from_bytes(data[27:30], "little") + 1,
        )
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return tuple(v & 0x3FFF for v in struct.unpack("<HH", data[26:30]))  # type: ignore[return-value]
    return None


def check_decode_cost(
    image: Image.Image, full_size: tuple[int, int], name: str, budget: int
) -> int:
    """Raise unless decoding ``image`` (opened, maybe drafted, not loaded) fits in ``budget``.

    ``full_size`` is the size in the header, before any draft. Returns the estimate in bytes.
    """
    width, height = image.size
    own = width * height * pixel_bytes(image.mode)
    work = _working_bytes(image, full_size, name, own)
    if own + work > budget:
        raise ImageTooLarge(
            f"{name}: decoding this {image.format} would take about {(own + work) // MB} MB, "
            f"more than the limit of {budget // MB} MB per image"
        )
    return own + work


def _working_bytes(image: Image.Image, full_size: tuple[int, int], name: str, own: int) -> int:
    if image.format == "WEBP":
        return WEBP_WORK_PER_PIXEL * full_size[0] * full_size[1]
    if image.format == "TIFF":
        return _tiff_chunk_bytes(image, name, own)
    if image.format in ("JPEG", "MPO") and image.info.get("progressive"):
        return _jpeg_coefficient_bytes(image, full_size)
    return 0


def _tiff_chunk_bytes(image: Image.Image, name: str, own: int) -> int:
    """The tile or strip libtiff decodes into before copying it out; refuse oversized tiles.

    libtiff clamps a strip to the image's height, so only tiles can outgrow their image.
    """
    tags = image.tag_v2  # type: ignore[attr-defined]
    width, height = image.size
    bits = tags.get(TIFF_BITS_PER_SAMPLE, (1,))
    bits = bits if isinstance(bits, tuple) else (int(bits),)
    # Separate planes hold one sample per chunk; libtiff's RGBA interface (YCbCr without
    # new-style JPEG, old-style JPEG) expands each pixel to 32 bits.
    bits_per_pixel = max(bits) if tags.get(TIFF_PLANAR, 1) == 2 else sum(bits)
    if tags.get(TIFF_PHOTOMETRIC) == YCBCR and tags.get(TIFF_COMPRESSION) != NEW_JPEG:
        bits_per_pixel = max(bits_per_pixel, 32)
    if TIFF_TILE_WIDTH in tags:
        chunk_w, chunk_h = int(tags[TIFF_TILE_WIDTH]), int(tags.get(TIFF_TILE_LENGTH, 0))
    else:
        rows = int(tags.get(TIFF_ROWS_PER_STRIP, height))
        chunk_w, chunk_h = width, min(rows, height)
    chunk = math.ceil(chunk_w * chunk_h * bits_per_pixel / 8)
    if chunk > max(2 * own, MIN_CHUNK_BYTES):
        raise InvalidImage(
            f"{name}: TIFF tiles of {chunk_w}x{chunk_h} would take {chunk // MB} MB to decode, "
            f"more than the {width}x{height} image they hold"
        )
    return chunk


def _jpeg_coefficient_bytes(image: Image.Image, full_size: tuple[int, int]) -> int:
    """A progressive JPEG's decoder keeps each component's DCT blocks (128 bytes each)."""
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * len(image.getbands())
    h_max = max(layer[1] for layer in layers)
    v_max = max(layer[2] for layer in layers)
    blocks = sum(
        math.ceil(full_size[0] * h / h_max / 8) * math.ceil(full_size[1] * v / v_max / 8)
        for _, h, v, _ in layers
    )
    return 128 * blocks
