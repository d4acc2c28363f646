"""Image bytes -> upright 8-bit RGB, with every format's decoding work bounded before it starts.

The server (through :class:`~service.engine.preprocess.Preprocessor`) and the trainer
both decode here, so an image means the same thing to both: same formats, same EXIF
orientation, same transparency and bit-depth handling.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from service.engine.decode_cost import check_decode_cost, check_webp_canvas
from service.engine.pixels import orientation_of, to_rgb, upright
from service.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType

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
