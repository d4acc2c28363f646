"""The image pyramid a window detector scans, sized by the smallest face asked for.

A detector with a ``window``-pixel input finds a face of side ``min_size`` on the copy
scaled by ``window / min_size``; smaller scales (each ``factor`` times the last) find the
larger faces. So the first level, not a fixed working side, sets the smallest face found.
``max_pixels`` bounds the cost: when the largest level would hold more pixels than that,
every level shrinks by the same factor and the smallest face findable grows with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class Pyramid:
    window: int
    factor: float = 0.709  # MTCNN's: sqrt(0.5), two levels per octave
    max_pixels: int = 2_000_000

    def first_scale(self, width: int, height: int, min_size: int) -> float:
        """The scale of the largest level: ``window / min_size``, or less to fit the budget."""
        return detection_scale(width, height, min_size, self.window, self.max_pixels, upscale=True)

    def scales(self, width: int, height: int, min_size: int) -> list[float]:
        scale, out = self.first_scale(width, height, min_size), []
        while min(width, height) * scale >= self.window:
            out.append(scale)
            scale *= self.factor
        return out

    def smallest_findable(self, width: int, height: int, min_size: int) -> int:
        """The smallest face side, in upright pixels, found on an image of this size."""
        return max(min_size, math.ceil(self.window / self.first_scale(width, height, min_size)))

    def scanned_pixels(self, width: int, height: int, min_size: int) -> int:
        """What detection costs: the pixels of every level (the admission price of a face scan)."""
        return sum(_level_pixels(width, height, s) for s in self.scales(width, height, min_size))


def detection_scale(
    width: int, height: int, min_size: int, window: int, max_pixels: int, upscale: bool = False
) -> float:
    """The scale at which a ``min_size`` face spans the detector's ``window`` pixels, lowered
    so that the scaled image holds at most ``max_pixels``; at most 1 unless ``upscale``."""
    scale = window / min_size if upscale else min(1.0, window / min_size)
    return min(scale, math.sqrt(max_pixels / (width * height)))


class OneCopy:
    """Cost rules of a detector that runs once on one scaled copy (Haar's cascade does its own
    pyramid inside OpenCV; YuNet is fully convolutional). Subclasses set ``window`` and
    ``max_pixels``."""

    window: int
    max_pixels: int

    def copy_scale(self, width: int, height: int, min_size: int) -> float:
        return detection_scale(width, height, min_size, self.window, self.max_pixels)

    def smallest_findable(self, width: int, height: int, min_size: int) -> int:
        return max(min_size, math.ceil(self.window / self.copy_scale(width, height, min_size)))

    def scanned_pixels(self, width: int, height: int, min_size: int) -> int:
        return _level_pixels(width, height, self.copy_scale(width, height, min_size))


def _level_pixels(width: int, height: int, scale: float) -> int:
    return math.ceil(width * scale) * math.ceil(height * scale)


def level(image: Image.Image, scale: float) -> Image.Image:
    """``image`` resized by ``scale`` (box pre-reduction first: a 12 MP photo shrinks fast)."""
    size = (math.ceil(image.width * scale), math.ceil(image.height * scale))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0 if scale < 0.5 else None)
