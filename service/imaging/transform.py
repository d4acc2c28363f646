"""A decoded image -> the tensor a tower reads: any Pillow mode to upright 8-bit RGB, then the
backbone's eval transform, equal to open_clip's.

Pixels: converting a whole 50 MP RGBA image at once costs four copies of it (RGBA copy, white
background, composite, RGB): about 1 GB. Here each band of rows is converted and, when the
model needs far fewer pixels, box-reduced before the next band is cut, so the extra memory
is one band plus the (reduced) result. Box reduction is local to each ``factor`` x
``factor`` block and bands start at multiples of ``factor``, so the result is exactly that
of converting first and reducing the whole image after.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from open_clip.transform import image_transform
from PIL import Image

from service.registry.manifest import Preprocess

WHITE = (255, 255, 255)
BAND_PIXELS = 1 << 18  # 1 MB per band in Pillow's 4-byte RGB, 2 MB as float64 gray
HIGH_DEPTH = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
ORIENTATION = 0x0112
# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def to_rgb(image: Image.Image, reduce_by: int = 1) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, box-reduced by ``reduce_by``; transparency becomes white.

    16- and 32-bit grayscale are scaled from their full range instead of clipped.
    """
    if image.mode == "RGB" and reduce_by == 1:
        return image
    convert = _converter(image)
    width, height = image.size
    out = Image.new("RGB", (-(-width // reduce_by), -(-height // reduce_by)))
    rows = reduce_by * max(1, BAND_PIXELS // (width * reduce_by))
    for top in range(0, height, rows):
        band = convert(image.crop((0, top, width, min(top + rows, height))))
        out.paste(band.reduce(reduce_by) if reduce_by > 1 else band, (0, top // reduce_by))
    return out


def upright(image: Image.Image, orientation: object) -> Image.Image:
    """Apply an EXIF orientation tag to an image already decoded (and reduced)."""
    method = UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(method) if method is not None else image


def orientation_of(image: Image.Image) -> object:
    """The EXIF (or XMP) orientation of a loaded image; None when it has none."""
    return image.getexif().get(ORIENTATION)


def _converter(image: Image.Image) -> Callable[[Image.Image], Image.Image]:
    if image.mode in HIGH_DEPTH:
        peak = 1.0
        if image.mode == "F":
            extrema = image.getextrema()
            peak = max(float(extrema[1]), 1.0)  # type: ignore[arg-type, index]
        return lambda band: _high_depth_to_rgb(band, peak)
    if image.mode in ALPHA or (image.mode == "P" and "transparency" in image.info):
        return _composite_on_white
    return lambda band: band.convert("RGB")


def _composite_on_white(band: Image.Image) -> Image.Image:
    rgba = band.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (*WHITE, 255)), rgba).convert("RGB")


def _high_depth_to_rgb(band: Image.Image, peak: float) -> Image.Image:
    """16-bit and 32-bit grayscale: scale the full range to 0..255 instead of clipping."""
    values = np.array(band, dtype=np.float64)  # in place from here: one band-sized buffer
    if band.mode == "F":
        values /= peak
        values *= 255.0
    else:
        values /= 257.0  # 65535 -> 255
    np.clip(values, 0, 255, out=values)
    gray = Image.fromarray(np.round(values, out=values).astype(np.uint8))
    return gray.convert("RGB")


class EvalTransform:
    """An upright RGB image -> the backbone's normalised 3 x H x W tensor."""

    def __init__(self, settings: Preprocess) -> None:
        self.image_size = settings.image_size
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
        self._mean = np.asarray(settings.mean, dtype=np.float32).reshape(3, 1, 1)
        self._std = np.asarray(settings.std, dtype=np.float32).reshape(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """An upright RGB image -> the backbone's normalised 3 x H x W tensor."""
        for step in self._geometric:
            image = step(image)
        # channels first before the arithmetic: broadcasting over a last axis of 3 is slow
        # (1 ms -> 0.3 ms for a 224 px image here); the float32 steps and their order are
        # ToTensor's and Normalize's, so the result is bit-identical to open_clip's.
        pixels = np.asarray(image).transpose(2, 0, 1).astype(np.float32, order="C")
        pixels /= np.float32(255)
        pixels -= self._mean
        pixels /= self._std
        return torch.from_numpy(pixels)
