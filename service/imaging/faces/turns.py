"""Turned copies of a photo, for detectors that only find faces near upright.

A window detector trained on upright faces (MTCNN: about +-20 degrees) misses a head tilted
further, as in group photos and selfies. Scanning copies turned by a few fixed angles finds
those faces upright in one of them; their boxes and landmarks are then turned back into the
photo's own frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.imaging.faces.pyramid import level


def turned_size(width: int, height: int, degrees: float) -> tuple[int, int]:
    """The size of the canvas that holds a ``width`` x ``height`` image turned by ``degrees``."""
    cos, sin = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    return math.ceil(width * cos + height * sin), math.ceil(width * sin + height * cos)


@dataclass(frozen=True)
class TurnedCopy:
    """``image`` scaled by ``scale`` and turned counter-clockwise by ``degrees`` on a canvas
    large enough to hold all of it (the corners are black)."""

    image: Image.Image
    degrees: float
    scale: float
    """The scale asked for; sizes are whole pixels, so each axis's own is ``axis_scales``."""
    source_size: tuple[int, int]
    axis_scales: tuple[float, float]

    @classmethod
    def of(
        cls, image: Image.Image, degrees: float, scale: float, scaled: Image.Image | None = None
    ) -> TurnedCopy:
        """``scaled``: ``image`` already resized by ``scale`` (see :func:`turned_copies`)."""
        scaled = level(image, scale) if scaled is None else scaled
        turned = scaled.rotate(degrees, Image.Resampling.BILINEAR, expand=True)
        axes = (scaled.width / image.width, scaled.height / image.height)
        return cls(turned, degrees, scale, image.size, axes)

    def to_source(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points of this copy -> the same points in the source image's pixels."""
        radians = math.radians(self.degrees)
        cos, sin = math.cos(radians), math.sin(radians)
        dx, dy = xs - self.image.width / 2, ys - self.image.height / 2
        # Pillow turns counter-clockwise as displayed (y grows downwards); this undoes it.
        x = cos * dx - sin * dy
        y = sin * dx + cos * dy
        (width, height), (sx, sy) = self.source_size, self.axis_scales
        return (x / sx + width / 2), (y / sy + height / 2)

    def boxes_to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes (x1, y1, x2, y2, score) found on the copy -> boxes of the same size, in
        source pixels, centred where the face is: the face's own width and height, not the
        hull of the turned box, so the size filter and the crop see the face's size."""
        cx, cy = self.to_source((boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2)
        scale = sum(self.axis_scales) / 2  # a box turned with the face mixes both axes
        half_w = (boxes[:, 2] - boxes[:, 0]) / (2 * scale)
        half_h = (boxes[:, 3] - boxes[:, 1]) / (2 * scale)
        return np.column_stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h, boxes[:, 4]])

    def points_to_source(self, points: np.ndarray) -> np.ndarray:
        """Landmarks laid out x1..x5, y1..y5 on the copy -> source pixels, same layout."""
        xs, ys = self.to_source(points[:, :5], points[:, 5:])
        return np.concatenate([xs, ys], axis=1)


def turned_copies(image: Image.Image, turns: Sequence[float], scale: float) -> Iterator[TurnedCopy]:
    """``image`` scaled by ``scale`` once, then turned by each of ``turns`` in turn: the
    copies share one resize of a possibly large photo, and only one is held at a time."""
    scaled = level(image, scale)
    for degrees in turns:
        yield TurnedCopy.of(image, degrees, scale, scaled)
