"""A group photo as a new user sends it, through the real app, engine and default detector:
1500 x 900 with scikit-image's astronaut portrait pasted three times, face widths about
100, 60 and 42 px (the Haar-on-640-px detector used to find 2 of them), also EXIF-rotated
and in grayscale. The face centre (224, 112) of the 512 px portrait was checked by hand.
"""

from __future__ import annotations

import pytest
from PIL import Image

from tests import images
from tests.unit.api.conftest import Call
from tests.unit.api.test_faces_api import assert_faces_largest_first

data = pytest.importorskip("skimage.data")

FACE_CENTRE = (224, 112)
PORTRAIT_FACE_PX = 95  # the face's width in the 512 px portrait (Haar box, checked by hand)
FACE_WIDTHS = (100, 60, 42)
LEFT = (60, 700, 1150)
TOP = 200
# EXIF orientation -> how the camera stored the upright picture.
STORED_AS = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def group() -> tuple[Image.Image, list[tuple[float, float]]]:
    """The canvas and the three face centres on it, largest face first."""
    portrait = Image.fromarray(data.astronaut())
    canvas = Image.new("RGB", (1500, 900), (120, 120, 120))
    centres = []
    for width, left in zip(FACE_WIDTHS, LEFT, strict=True):
        side = round(512 * width / PORTRAIT_FACE_PX)
        canvas.paste(portrait.resize((side, side), Image.Resampling.LANCZOS), (left, TOP))
        centres.append((left + FACE_CENTRE[0] * side / 512, TOP + FACE_CENTRE[1] * side / 512))
    return canvas, centres


def assert_three_faces_largest_first(call: Call, upload: bytes) -> None:
    assert_faces_largest_first(call, upload, group()[1])


def test_group_photo_gives_all_three_faces_down_to_42_px(call: Call) -> None:
    canvas, _ = group()
    assert_three_faces_largest_first(call, images.encode(canvas, "JPEG", quality=90))


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_rotated_group_photo_gives_the_same_faces_upright(call: Call, orientation: int) -> None:
    canvas, _ = group()
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = canvas.transpose(STORED_AS[orientation])
    assert_three_faces_largest_first(
        call, images.encode(stored, "JPEG", quality=90, exif=exif.tobytes())
    )


def test_grayscale_group_photo_gives_the_same_faces(call: Call) -> None:
    canvas, _ = group()
    assert_three_faces_largest_first(call, images.encode(canvas.convert("L"), "JPEG", quality=90))
