"""Image decoding and the eval transform, against open_clip's own transform."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from open_clip.transform import image_transform
from PIL import Image

from service.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from service.imaging import ImageLimits, Preprocessor, to_rgb
from service.registry.manifest import Preprocess
from tests import images

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def make_preprocessor(size: int = 224, max_pixels: int = 50_000_000) -> Preprocessor:
    settings = Preprocess(image_size=size, mean=OPENAI_MEAN, std=OPENAI_STD)
    return Preprocessor(settings, ImageLimits(max_pixels=max_pixels))


@pytest.mark.parametrize("size", [(96, 64), (64, 96), (300, 300), (225, 224)])
def test_equals_open_clip_eval_transform(size: tuple[int, int]) -> None:
    picture = images.gradient(*size)
    reference = image_transform(224, is_train=False, mean=OPENAI_MEAN, std=OPENAI_STD)(picture)
    ours = make_preprocessor()(images.encode(picture, "PNG"))
    assert ours.shape == (3, 224, 224)
    assert torch.equal(ours, reference)


def test_exif_orientation_is_applied() -> None:
    data, upright = images.exif_rotated_jpeg(orientation=6)
    decoded = make_preprocessor().decode(data)
    assert decoded.size == upright.size  # 96x64 again, not the stored 64x96
    difference = np.abs(np.asarray(decoded, np.int16) - np.asarray(upright, np.int16)).mean()
    assert difference < 8  # JPEG loss only


def test_transparency_is_composited_on_white() -> None:
    clear_black = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert to_rgb(clear_black).getpixel((0, 0)) == (255, 255, 255)
    half = Image.new("LA", (8, 8), (0, 128))
    assert to_rgb(half).getpixel((0, 0)) == (127, 127, 127)
    palette = Image.new("P", (8, 8), 0)
    palette.info["transparency"] = 0
    assert to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_grayscale_uses_the_full_range() -> None:
    gray16 = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    decoded = make_preprocessor().decode(images.encode(gray16, "PNG"))
    assert [decoded.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255,) * 3]


def test_cmyk_becomes_rgb() -> None:
    data = images.encode(images.gradient().convert("CMYK"), "JPEG")
    assert make_preprocessor().decode(data).mode == "RGB"


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("P", (16, 16), color) for color in (1, 2, 3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    decoded = make_preprocessor().decode(buffer.getvalue())
    assert decoded.getpixel((0, 0)) == frames[0].convert("RGB").getpixel((0, 0))


def test_large_jpeg_is_decoded_in_draft_mode() -> None:
    decoded = make_preprocessor().decode(images.large_jpeg(12))
    assert min(decoded.size) >= 1.5 * 224  # enough detail for the resize (REDUCING_GAP)
    assert decoded.size[0] <= 4000 // 4 + 1  # but not decoded at full 4000x3000


def test_pixel_limit_is_checked_from_the_header() -> None:
    data = images.encode(Image.new("L", (3000, 2000)), "PNG")
    with pytest.raises(ImageTooLarge, match="6000000 pixels"):
        make_preprocessor(max_pixels=5_000_000).decode(data)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", InvalidImage),
        (b"GIF89a-not-really", UnsupportedMediaType),
        (b"hello world, not an image", UnsupportedMediaType),
        (images.jpeg()[:200], InvalidImage),
        (images.encode(images.gradient(), "ICO"), UnsupportedMediaType),
    ],
    ids=["empty", "bad-gif-header", "text", "truncated-jpeg", "ico-not-accepted"],
)
def test_bad_bytes_raise_typed_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        make_preprocessor()(data, "upload")
