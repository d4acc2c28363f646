"""Decoding rules in-process: accepted formats, conversions in bands, reduction, orientation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from open_clip.transform import image_transform
from PIL import Image

from service.errors import ImageTooLarge, UnsupportedMediaType
from service.imaging import Preprocessor, to_rgb
from service.imaging.decode import ImageLimits, decode_image
from service.registry.manifest import Preprocess
from tests import images
from tests.unit.imaging import bombs

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _naive_rgb(image: Image.Image) -> Image.Image:
    """The whole-image conversion the banded one must equal."""
    if image.mode in ("I;16", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = max(float(values.max()), 1.0) if image.mode == "F" else 1.0
        scaled = values / peak * 255.0 if image.mode == "F" else values / 257.0
        return Image.fromarray(np.clip(scaled, 0, 255).round().astype(np.uint8)).convert("RGB")
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16", "F"])
@pytest.mark.parametrize("factor", [1, 3])
def test_banded_conversion_equals_whole_image_conversion(mode: str, factor: int) -> None:
    rng = np.random.default_rng(0)
    height, width = 1301, 700  # several bands, and a remainder that is not a multiple of 3
    if mode == "F":
        image = Image.fromarray(rng.random((height, width), dtype=np.float32) * 3.0)
    elif mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (height, width), dtype=np.uint16))
    else:
        rgba = rng.integers(0, 255, (height, width, 4), dtype=np.uint8)
        image = Image.fromarray(rgba, "RGBA").convert(mode)
        if mode == "P":
            image.info["transparency"] = 0
    expected = _naive_rgb(image)
    expected = expected.reduce(factor) if factor > 1 else expected
    assert np.array_equal(np.asarray(to_rgb(image, reduce_by=factor)), np.asarray(expected))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_images_stay_close_to_open_clips_full_resolution_transform(fmt: str) -> None:
    """Draft decoding and box reduction change a 12 MP image by about one level of 255."""
    big = Image.open(io.BytesIO(images.large_jpeg(12))).convert("RGB")
    data = images.encode(big, fmt)
    reference = image_transform(224, is_train=False, mean=MEAN, std=STD)(big)
    preprocess = Preprocessor(
        Preprocess(image_size=224, mean=MEAN, std=STD), ImageLimits(50_000_000)
    )
    ours = preprocess(data)
    difference = (ours - reference).abs()
    assert difference.mean() < 0.02  # normalised units: ~1.4 levels of 255
    assert difference.max() < 0.2
    assert not torch.equal(ours, reference) or fmt == "PNG"  # the JPEG path did take a draft


def test_orientation_is_applied_after_reduction() -> None:
    stored = images.gradient(400, 300).resize((2400, 1800)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = images.encode(stored, "PNG", exif=exif.tobytes())
    upright = decode_image(data, "x", ImageLimits(50_000_000), image_size=224)
    assert upright.width > upright.height  # landscape again
    assert min(upright.size) >= 1.5 * 224 and max(upright.size) < 2400  # and reduced


def test_unsupported_format_lists_the_configured_formats() -> None:
    limits = ImageLimits(10_000_000, formats=frozenset({"PNG", "WEBP", "NOSUCHFORMAT"}))
    with pytest.raises(UnsupportedMediaType) as raised:
        decode_image(images.jpeg(), "photo", limits)
    assert "NOSUCHFORMAT, PNG, WEBP" in raised.value.message
    assert "JPEG" not in raised.value.message.split("(")[-1]


def test_only_the_accepted_parsers_are_reached() -> None:
    """A BMP is refused as unidentified when BMP is off: its parser never ran."""
    limits = ImageLimits(10_000_000, formats=frozenset({"PNG"}))
    with pytest.raises(UnsupportedMediaType, match="not an image in an accepted format"):
        decode_image(images.encode(images.gradient(), "BMP"), "x", limits)


def test_webp_canvas_is_checked_before_the_decoder_opens() -> None:
    data = bombs.flat("RGB", 4_000_000, "WEBP")
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode_image(data, "x", ImageLimits(1_000_000))


def test_progressive_jpeg_coefficients_count_against_the_budget() -> None:
    data = bombs.flat("RGB", 4_000_000, "JPEG", progressive=True, subsampling="4:4:4")
    baseline = bombs.flat("RGB", 4_000_000, "JPEG", subsampling="4:4:4")
    limits = ImageLimits(4_000_000, max_decode_bytes=16 << 20)  # 4 MP x 3 x 2 B = 23 MB
    assert decode_image(baseline, "x", limits, image_size=224).mode == "RGB"
    with pytest.raises(ImageTooLarge, match="decoding this JPEG would take"):
        decode_image(data, "x", limits, image_size=224)


def test_a_honest_tiled_tiff_is_accepted() -> None:
    data = bombs.tiff_tile_bomb(tile=256, size=100, complete=True)
    assert decode_image(data, "x", ImageLimits(1_000_000)).getextrema() == ((0, 0),) * 3
