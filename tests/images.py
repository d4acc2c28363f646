"""Images made by the tests, in every format and mode the service must accept."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def gradient(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A deterministic colourful RGB image with structure (so resizing matters)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    noise = rng.integers(0, 40, size=base.shape)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def jpeg(width: int = 96, height: int = 64, seed: int = 0, **params: object) -> bytes:
    return encode(gradient(width, height, seed), "JPEG", quality=90, **params)


def png(width: int = 96, height: int = 64, seed: int = 0) -> bytes:
    return encode(gradient(width, height, seed), "PNG")


def exif_rotated_jpeg(orientation: int = 6) -> tuple[bytes, Image.Image]:
    """A JPEG stored sideways with an EXIF orientation tag, and the upright image it shows."""
    upright = gradient(96, 64)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 undoes this
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes()), upright


def variants() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, content type): every format and colour mode of the contract."""
    rgb = gradient()
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(np.tile(np.arange(96, dtype=np.uint8) * 2, (64, 1))))
    palette_transparent = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette_transparent.info["transparency"] = 0
    gray16 = Image.fromarray((np.arange(96 * 64).reshape(64, 96) * 10).astype(np.uint16))
    frames = [gradient(seed=s).convert("P") for s in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    return {
        "jpeg": (encode(rgb, "JPEG"), "image/jpeg"),
        "png": (encode(rgb, "PNG"), "image/png"),
        "webp": (encode(rgb, "WEBP"), "image/webp"),
        "gif_animated": (gif.getvalue(), "image/gif"),
        "bmp": (encode(rgb, "BMP"), "image/bmp"),
        "tiff": (encode(rgb, "TIFF"), "image/tiff"),
        "grayscale": (encode(rgb.convert("L"), "PNG"), "image/png"),
        "rgba": (encode(rgba, "PNG"), "image/png"),
        "palette_transparent": (encode(palette_transparent, "PNG"), "image/png"),
        "cmyk": (encode(rgb.convert("CMYK"), "JPEG"), "image/jpeg"),
        "gray16": (encode(gray16, "PNG"), "image/png"),
        "exif_rotated": (exif_rotated_jpeg()[0], "image/jpeg"),
    }


def large_jpeg(megapixels: float = 12.0) -> bytes:
    """A 4000x3000-class JPEG (12 MP by default)."""
    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(width * 3 / 4)
    small = gradient(400, 300)
    return encode(small.resize((width, height), Image.Resampling.BILINEAR), "JPEG", quality=85)
