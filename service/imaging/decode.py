"""Image bytes -> upright 8-bit RGB, with every format's decoding work bounded before it starts.

The server (through :class:`Preprocessor`) and the trainer
both decode here, so an image means the same thing to both: same formats, same EXIF
orientation, same transparency and bit-depth handling.

The pixel limit bounds the image, not the decoder: libtiff allocates a whole tile or strip
before it decodes a byte of it (a 158-byte TIFF can ask for 768 MiB), libwebp keeps two
RGBA canvases beside the frame it returns, and a progressive JPEG holds every DCT
coefficient of the full-size image however small the draft it is decoded to. Each cost
below is the largest buffer the format's decoder is known to allocate, so a file is
refused before the allocation, not after it.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass

import torch
from PIL import Image, UnidentifiedImageError

from service.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from service.imaging.transform import EvalTransform, orientation_of, to_rgb, upright
from service.registry.manifest import Preprocess

ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
# Decode (JPEG draft) or box-reduce an image until its short side is at most this many
# times the model's size: the resize that follows then still averages >= 1.5 source pixels
# per output pixel. Measured on a 12 MP JPEG: 1/8-scale DCT decode, ~1 level of 255 from
# open_clip's full-resolution transform on average, and no 14 ms wide-kernel resize.
REDUCING_GAP = 1.5
# Pillow's own bomb check would fire on images we already refuse by pixel count; ours
# names the limit in its message, so Pillow's is lifted past any limit we would accept.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    max_bytes: int = 1 << 62
    max_aspect_ratio: float = 20.0
    formats: frozenset[str] = ACCEPTED_FORMATS
    # Most memory one image's decoder may take (its image plus the decoder's own buffers).
    # None: an RGBA image at the pixel limit (4 B/px) plus 32 MiB of decoder buffers, so
    # every format whose decoder needs no more than that is accepted up to the pixel limit.
    max_decode_bytes: int | None = None

    @property
    def decode_budget(self) -> int:
        if self.max_decode_bytes is not None:
            return self.max_decode_bytes
        return 4 * self.max_pixels + (32 << 20)


def decode_image(
    data: bytes, name: str, limits: ImageLimits, image_size: int | None = None
) -> Image.Image:
    """Check format, size and decoding cost from the header, then decode to upright RGB.

    With ``image_size`` (the model's input side), a large image is decoded at a reduced
    scale (JPEG) or box-reduced while it is converted, down to ``REDUCING_GAP`` times it.
    """
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"{name}: {len(data)} bytes is more than the limit of {limits.max_bytes}"
        )
    if "WEBP" in limits.formats:
        check_webp_canvas(data, name, limits.max_pixels)
    image = open_image(data, name, limits.formats)
    check_geometry(image.size, name, limits)
    full_size = image.size
    target = None if image_size is None else round(REDUCING_GAP * image_size)
    if target is not None and image.format in ("JPEG", "MPO"):
        image.draft("RGB", (target, target))  # 1/2, 1/4 or 1/8 scale DCT decoding
    check_decode_cost(image, full_size, name, limits.decode_budget)
    try:
        image.load()
        factor = 1 if target is None else max(1, min(image.size) // target)
        return upright(to_rgb(image, reduce_by=factor), orientation_of(image))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"{name}: the image data is corrupt or truncated ({exc})") from exc


class Preprocessor:
    """Bytes -> a backbone's input tensor: :func:`decode_image`, reduced to no more detail
    than the transform can use, then the backbone's :class:`EvalTransform`."""

    def __init__(self, settings: Preprocess, limits: ImageLimits) -> None:
        self.image_size = settings.image_size
        self.limits = limits
        self.transform = EvalTransform(settings)

    def __call__(self, data: bytes, name: str = "image") -> torch.Tensor:
        return self.transform(self.decode(data, name))

    def decode(self, data: bytes, name: str = "image") -> Image.Image:
        return decode_image(data, name, self.limits, self.image_size)


def check_geometry(size: tuple[int, int], name: str, limits: ImageLimits) -> None:
    width, height = size
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"{name}: {width}x{height} is {width * height} pixels, "
            f"more than the limit of {limits.max_pixels}"
        )
    if max(width, height) > limits.max_aspect_ratio * max(min(width, height), 1):
        raise InvalidImage(
            f"{name}: {width}x{height} is more elongated than the limit of "
            f"{limits.max_aspect_ratio:g}:1"
        )


def _parsers(formats: frozenset[str]) -> list[str]:
    """The registered openers for ``formats``; JPEG's opener returns MPO files as well."""
    Image.init()
    return sorted(f for f in formats - {"MPO"} if f in Image.OPEN)


def open_image(data: bytes, name: str, formats: frozenset[str] = ACCEPTED_FORMATS) -> Image.Image:
    """Parse the header with the accepted formats' parsers only (no other parser is reached)."""
    if not data:
        raise InvalidImage(f"{name}: the file is empty")
    accepted = ", ".join(sorted(formats - {"MPO"}))
    parsers = _parsers(formats)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=parsers)
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType(
            f"{name}: not an image in an accepted format ({accepted})"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"{name}: the image header is corrupt ({exc})") from exc
    if image.format not in formats:
        raise UnsupportedMediaType(f"{name}: format {image.format} is not accepted ({accepted})")
    return image


# -- what decoding will cost, read from the header before any pixel is decoded --------
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
