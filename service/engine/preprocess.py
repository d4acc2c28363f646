"""Image bytes -> normalised tensor, equal to open_clip's eval transform for the backbone.

Every decoding problem becomes a typed client error here, before any model work.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from open_clip.transform import image_transform
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from service.registry.manifest import Preprocess

ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
WHITE = (255, 255, 255)
# Pillow's own bomb check would fire on images we already refuse by pixel count; ours
# names the limit in its message, so Pillow's is lifted past any limit we would accept.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    max_bytes: int = 1 << 62
    max_aspect_ratio: float = 20.0
    formats: frozenset[str] = ACCEPTED_FORMATS


class Preprocessor:
    """Decodes one image and applies the backbone's eval transform."""

    def __init__(self, settings: Preprocess, limits: ImageLimits) -> None:
        self.image_size = settings.image_size
        self.limits = limits
        reference = image_transform(
            settings.image_size,
            is_train=False,
            mean=settings.mean,
            std=settings.std,
            resize_mode=settings.resize_mode,
            interpolation=settings.interpolation,
        )
        # open_clip's geometric steps (resize, crop) run on the PIL image as they are; its
        # ToTensor + Normalize are redone in numpy with the same float32 arithmetic, so the
        # preprocessing threads never start torch's OpenMP thread teams, whose spinning
        # would compete with the encoder's for the cores.
        *geometric, to_tensor, normalize = reference.transforms
        if type(normalize).__name__ != "Normalize" or "ToTensor" not in type(to_tensor).__name__:
            raise TypeError(f"unexpected open_clip eval transform: {reference}")
        self._geometric: list[Callable[[Image.Image], Image.Image]] = geometric
        self._mean = np.asarray(settings.mean, dtype=np.float32)
        self._std = np.asarray(settings.std, dtype=np.float32)

    def __call__(self, data: bytes, name: str = "image") -> torch.Tensor:
        return self.transform(self.decode(data, name))

    def transform(self, image: Image.Image) -> torch.Tensor:
        """An upright RGB image -> the backbone's normalised 3 x H x W tensor."""
        for step in self._geometric:
            image = step(image)
        pixels = np.asarray(image, dtype=np.float32) / np.float32(255)
        normalised = (pixels - self._mean) / self._std
        return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))

    def decode(self, data: bytes, name: str = "image") -> Image.Image:
        """Open, check format and size from the header, then decode to upright RGB."""
        if len(data) > self.limits.max_bytes:
            raise ImageTooLarge(
                f"{name}: {len(data)} bytes is more than the limit of {self.limits.max_bytes}"
            )
        image = open_image(data, name, self.limits.formats)
        width, height = image.size
        if width * height > self.limits.max_pixels:
            raise ImageTooLarge(
                f"{name}: {width}x{height} is {width * height} pixels, "
                f"more than the limit of {self.limits.max_pixels}"
            )
        if max(width, height) > self.limits.max_aspect_ratio * max(min(width, height), 1):
            raise InvalidImage(
                f"{name}: {width}x{height} is more elongated than the limit of "
                f"{self.limits.max_aspect_ratio:g}:1"
            )
        if image.format in ("JPEG", "MPO"):
            # Decode at 1/2, 1/4 or 1/8 scale when the image is far larger than needed.
            image.draft("RGB", (2 * self.image_size, 2 * self.image_size))
        try:
            image.load()
            upright = ImageOps.exif_transpose(image) or image
            return to_rgb(upright)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidImage(f"{name}: the image data is corrupt or truncated ({exc})") from exc


def open_image(data: bytes, name: str, formats: frozenset[str] = ACCEPTED_FORMATS) -> Image.Image:
    if not data:
        raise InvalidImage(f"{name}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType(
            f"{name}: not an image in a supported format "
            f"({', '.join(sorted(ACCEPTED_FORMATS - {'MPO'}))})"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"{name}: the image header is corrupt ({exc})") from exc
    if image.format not in formats:
        accepted = ", ".join(sorted(formats - {"MPO"}))
        raise UnsupportedMediaType(f"{name}: format {image.format} is not accepted ({accepted})")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency is composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_depth_to_rgb(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grayscale: scale the full range to 0..255 instead of clipping."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        peak = max(float(values.max(initial=0.0)), 1.0)
        scaled = values / peak * 255.0
    else:
        scaled = values / 257.0  # 65535 -> 255
    gray = Image.fromarray(np.clip(scaled, 0, 255).round().astype(np.uint8), mode="L")
    return gray.convert("RGB")
