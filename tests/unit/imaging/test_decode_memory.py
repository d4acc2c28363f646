"""Peak memory of preprocessing bombs and honest images at the pixel limit, per image.

Each image is preprocessed by the real Preprocessor in a fresh forked process that reads
its own peak RSS (see peak_rss.py); the bounds are properties of the image, not timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from service.imaging.decode import pixel_bytes
from tests.server_process import ROOT
from tests.unit.imaging import bombs

LIMIT = 20_000_000  # the pixel limit of the measured Preprocessor
MB = 1 << 20
BOMB_MB = 32  # a refused or tiny image may cost the child this much, no more

pytestmark = [
    pytest.mark.slow,  # each case decodes in a fresh process
    pytest.mark.skipif(
        not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset"
    ),
]


def _progressive(pixels: int) -> bytes:
    return bombs.flat("RGB", pixels, "JPEG", (90, 120, 200), progressive=True, quality=90)


CASES = {
    "tiff_tile_bomb": lambda: bombs.tiff_tile_bomb(),
    "tiff_tile_bomb_gray": lambda: bombs.tiff_tile_bomb(rgb=False),
    "tiff_strip_bomb": lambda: bombs.tiff_strip_bomb(),
    "gif_many_frames": lambda: bombs.many_frames("GIF"),
    "webp_many_frames": lambda: bombs.many_frames("WEBP"),
    "webp_at_limit": lambda: bombs.flat("RGBA", LIMIT, "WEBP", (10, 20, 30, 128)),
    "rgba_png_at_limit": lambda: bombs.flat("RGBA", LIMIT, value=(10, 20, 30, 128)),
    "la_png_at_limit": lambda: bombs.flat("LA", LIMIT, value=(10, 128)),
    "gray16_png_at_limit": lambda: bombs.flat("I;16", LIMIT, value=1000),
    "float_tiff_at_limit": lambda: bombs.flat(
        "F", LIMIT, "TIFF", 0.5, compression="tiff_adobe_deflate"
    ),
    "progressive_jpeg_at_limit": lambda: _progressive(LIMIT),
}
# Honest images: bounded by the decoded image itself (unavoidable) plus a little.
MODES = {
    "rgba_png_at_limit": "RGBA",
    "la_png_at_limit": "LA",
    "gray16_png_at_limit": "I;16",
    "float_tiff_at_limit": "F",
}


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    folder = tmp_path_factory.mktemp("bombs")
    paths = []
    for name, build in CASES.items():
        path = folder / name
        path.write_bytes(build())
        paths.append(str(path))
    command = [sys.executable, "-m", "tests.unit.imaging.peak_rss", "224", str(LIMIT), *paths]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {line["file"]: line for line in lines}


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("tiff_tile_bomb", "InvalidImage"),
        ("tiff_tile_bomb_gray", "InvalidImage"),
        ("tiff_strip_bomb", "InvalidImage"),
        ("webp_at_limit", "ImageTooLarge"),  # libwebp needs 16 B/px: over the decode budget
    ],
)
def test_bombs_are_refused_before_the_decoder_allocates(
    measured: dict[str, dict[str, object]], case: str, error: str
) -> None:
    result = measured[case]
    assert str(result["outcome"]).startswith(error), result
    assert result["peak_mb"] < BOMB_MB, result  # was 773 MB for the RGB tile bomb


@pytest.mark.parametrize("case", ["gif_many_frames", "webp_many_frames"])
def test_many_frames_decode_only_the_first(
    measured: dict[str, dict[str, object]], case: str
) -> None:
    result = measured[case]
    assert result["outcome"] == "ok" and result["shape"] == [3, 224, 224], result
    assert result["peak_mb"] < BOMB_MB, result


@pytest.mark.parametrize("case", sorted(MODES))
def test_conversion_at_the_pixel_limit_costs_about_one_decoded_image(
    measured: dict[str, dict[str, object]], case: str
) -> None:
    """Converting to RGB and reducing no longer copies the image several times (was 5-9x)."""
    result = measured[case]
    own_mb = LIMIT * pixel_bytes(MODES[case]) / MB
    assert result["outcome"] == "ok" and result["shape"] == [3, 224, 224], result
    assert result["peak_mb"] < 1.5 * own_mb + 16, (result, own_mb)


def test_progressive_jpeg_costs_its_coefficients_not_more(
    measured: dict[str, dict[str, object]],
) -> None:
    result = measured["progressive_jpeg_at_limit"]
    coefficients_mb = LIMIT * 1.5 * 128 / 64 / MB  # 4:2:0: Y plus two quarter-size planes
    assert result["outcome"] == "ok", result
    assert result["peak_mb"] < 1.2 * coefficients_mb + 16, result


def test_the_cases_are_what_they_claim() -> None:
    """The honest images really have the mode whose cost the bounds above assume."""
    import io

    for case, mode in MODES.items():
        with Image.open(io.BytesIO(CASES[case]())) as image:
            assert image.mode == mode, case
            assert LIMIT * 0.99 < image.width * image.height <= LIMIT
