"""A face box -> a square, level crop the backbone's eval transform then takes.

The square is centred on the box and ``1 + margin`` times its longest side (InsightFace
uses 1.5x: margin 0.5), so the model sees hair, ears and chin as in face datasets. Parts
outside the photo are padded black; with eye landmarks the square is turned so that the
eyes are level, as DeepFace's alignment does.
"""

from __future__ import annotations

import math

from PIL import Image

from service.imaging.faces.types import Face

PAD = (0, 0, 0)


def crop_face(image: Image.Image, face: Face, margin: float, size: int) -> Image.Image:
    """The ``size`` x ``size`` RGB crop of ``face`` in the upright RGB ``image``."""
    if margin < 0 or size <= 0:
        raise ValueError(f"margin must be >= 0 and size > 0 (got {margin}, {size})")
    box = face.box
    side = max(box.width, box.height) * (1.0 + margin)
    centre = box.centre
    angle = math.radians(face.eyes.angle_degrees) if face.eyes is not None else 0.0
    cos, sin = math.cos(angle), math.sin(angle)
    # The axis-aligned square that holds the turned one; pixels outside the photo are PAD.
    half = side * (abs(cos) + abs(sin)) / 2
    left, top = math.floor(centre.x - half), math.floor(centre.y - half)
    right, bottom = math.ceil(centre.x + half), math.ceil(centre.y + half)
    patch = image.crop((left, top, right, bottom)).convert("RGB")  # crop first: no 12 MP copy
    cx, cy = centre.x - left, centre.y - top
    sx = sy = 1.0
    if side > size:
        # Shrink first with Pillow's antialiasing resize: the affine step below samples
        # points and would alias a large face brought down to a few hundred pixels.
        width = max(1, round(patch.width * size / side))
        height = max(1, round(patch.height * size / side))
        sx, sy = width / patch.width, height / patch.height
        patch = patch.resize((width, height), Image.Resampling.BICUBIC)
        cx, cy = cx * sx, cy * sy
    # Output pixel (u, v) samples the patch at centre + R(angle) @ k * (u - h, v - h).
    kx, ky, h = side * sx / size, side * sy / size, size / 2
    coefficients = (
        kx * cos,
        -kx * sin,
        cx - kx * (cos - sin) * h,
        ky * sin,
        ky * cos,
        cy - ky * (sin + cos) * h,
    )
    return patch.transform(
        (size, size),
        Image.Transform.AFFINE,
        coefficients,
        resample=Image.Resampling.BICUBIC,
        fillcolor=PAD,
    )
