"""What a face detector returns, and the interface every detector implements.

Boxes are in pixels of the *upright* image (after EXIF orientation), the frame a client
sees when it opens the photo, so a box can be drawn on the image as it is displayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from PIL import Image


class Point(NamedTuple):
    """A position in upright-image pixels (continuous: pixel i spans i..i+1)."""

    x: float
    y: float


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle: top-left corner, width and height, in pixels."""

    x: int
    y: int
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def centre(self) -> Point:
        return Point(self.x + self.width / 2, self.y + self.height / 2)

    def contains(self, point: Point) -> bool:
        return self.x <= point.x < self.x + self.width and self.y <= point.y < self.y + self.height

    def iou(self, other: Box) -> float:
        """Intersection over union: 1 for the same box, 0 for disjoint ones."""
        left, top = max(self.x, other.x), max(self.y, other.y)
        right = min(self.x + self.width, other.x + other.width)
        bottom = min(self.y + self.height, other.y + other.height)
        inter = max(0, right - left) * max(0, bottom - top)
        return inter / (self.area + other.area - inter) if inter else 0.0


@dataclass(frozen=True)
class Eyes:
    """The two eye centres, ordered by x in the image (the subject's right eye first)."""

    left: Point
    right: Point

    @property
    def angle_degrees(self) -> float:
        """Angle of the eye line; positive when the right-hand eye is lower in the image."""
        return math.degrees(math.atan2(self.right.y - self.left.y, self.right.x - self.left.x))


@dataclass(frozen=True)
class Face:
    box: Box
    score: float
    """Detector confidence in 0..1; a ranking within one detector, not a calibrated probability."""
    eyes: Eyes | None = None
    """Eye landmarks when the detector gives them (YuNet); the crop is then levelled."""


class Detections(NamedTuple):
    """The faces kept (largest first) and how many were found before the per-image limit."""

    faces: list[Face]
    found: int

    @property
    def dropped(self) -> int:
        return self.found - len(self.faces)


class FaceDetector(Protocol):
    """Finds faces in an upright RGB image; implementations must be safe to call from threads."""

    name: str

    def detect(self, image: Image.Image, min_size: int) -> list[Face]:
        """Every face of at least ``min_size`` pixels, largest first: a box whose longer side
        is ``min_size`` or more (MTCNN's: ``0.8 * min_size``, since it frames brows to chin)."""
        ...

    def smallest_findable(self, width: int, height: int, min_size: int) -> int:
        """The smallest face side, in upright pixels, found on an image of this size: more
        than ``min_size`` when the cap on pixels scanned shrinks a large photo."""
        ...

    def scanned_pixels(self, width: int, height: int, min_size: int) -> int:
        """Pixels the detector's network or cascade is run over: its price per image."""
        ...


def working_copy(image: Image.Image, scale: float, mode: str) -> Image.Image:
    """A copy scaled by ``scale`` (at most 1) in ``mode``.

    Detection cost grows with the pixel count while a face only needs a detector window's
    pixels to be found, so detectors run on this copy and map their boxes back by ``1 / scale``.
    """
    copy = image.convert(mode)
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        # reducing_gap: a box-filter pre-reduction, so a 12 MP photo shrinks quickly.
        copy = copy.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return copy


def upright_box(
    x: float, y: float, width: float, height: float, scale: float, size: tuple[int, int]
) -> Box:
    """A box found on the working copy, mapped back to the full image and clipped to it."""
    x, y, width, height = x / scale, y / scale, width / scale, height / scale
    left, top = min(size[0], max(0, round(x))), min(size[1], max(0, round(y)))
    right = max(left, min(size[0], round(x + width)))
    bottom = max(top, min(size[1], round(y + height)))
    return Box(left, top, right - left, bottom - top)  # empty when it lies outside the photo


def order_faces(faces: list[Face], min_size: int) -> list[Face]:
    """Drop faces whose box is empty (it lay outside the photo) or whose longer side is under
    ``min_size``, and sort the rest largest first.

    The longer side, because landmark detectors frame a face tightly (MTCNN: brows to chin,
    about 0.9 of a Haar square's width) and the crop is cut on the longer side too.
    """
    kept = [
        f
        for f in faces
        if min(f.box.width, f.box.height) >= 1 and max(f.box.width, f.box.height) >= min_size
    ]
    return sorted(kept, key=lambda f: (-f.box.area, -f.score, f.box.y, f.box.x))
