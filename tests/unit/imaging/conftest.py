"""Shared by the face tests: scikit-image's astronaut portrait, the Haar detector (the
fallback, which needs no weights) and a group canvas of the portrait at four sizes.
tests/unit/imaging/test_mtcnn.py overrides ``detector`` with MTCNN, the default.
"""

from __future__ import annotations

import pytest
from PIL import Image, ImageOps

from service.imaging.faces import Face, HaarDetector

data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def portrait() -> Image.Image:
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def detector() -> HaarDetector:
    return HaarDetector()


@pytest.fixture(scope="module")
def portrait_face(portrait: Image.Image, detector: HaarDetector) -> Face:
    faces = detector.detect(portrait, min_size=40)
    assert len(faces) == 1
    return faces[0]


@pytest.fixture(scope="module")
def group() -> tuple[Image.Image, list[tuple[int, int, int]]]:
    """The portrait (upscaled to 768 px) pasted at 1, 0.6, 0.4 and mirrored at 0.8.

    Returns the canvas and each copy's (x, y, side), largest first.
    """
    base = Image.fromarray(data.astronaut()).resize((768, 768), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (1382, 1229), (120, 120, 120))
    places = [(0, 0, 768), (768, 0, 614), (0, 768, 461), (481, 768, 307)]
    for (x, y, side), mirrored in zip(places, (False, True, False, False), strict=True):
        copy = base.resize((side, side), Image.Resampling.LANCZOS)
        canvas.paste(ImageOps.mirror(copy) if mirrored else copy, (x, y))
    return canvas, places
