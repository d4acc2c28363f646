"""Real faces composited on real scenes, with their ground truth, for ``bench.faces``.

Only photographs that packages ship: scikit-image's astronaut portrait (the face centre
(224, 112) and width 95 px were checked by hand) and the 100 faces of
``skimage.data.lfw_subset()`` (25 x 25 px crops of Labeled Faces in the Wild, face edge to
edge), pasted at scales 1 to 0.3 of a base width, turned by up to +-30 degrees, some
mirrored, onto person-free ``skimage.data`` scenes. A detection counts for a face when its
box holds the face's centre and its longer side is within half to twice the face's width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from service.imaging.faces import Face, Point

CANVAS = (1280, 960)
BASE_WIDTH = 140  # face width at scale 1
SCALES = (1.0, 0.75, 0.5, 0.4, 0.3)  # 140, 105, 70, 56, 42 px
ANGLES = (-30, -15, 0, 15, 30)
SCENES = ("coffee", "chelsea", "rocket", "coins", "moon", "grass", "brick", "gravel")
BINS = ((40, 60), (60, 100), (100, 10_000))  # face width, px


@dataclass(frozen=True)
class Truth:
    centre: Point
    width: float
    angle: int


@dataclass(frozen=True)
class Composite:
    source: str
    image: Image.Image
    faces: list[Truth]


def astronaut_patch() -> tuple[Image.Image, float]:
    """A square around the portrait's face, and the face's width in it."""
    from skimage import data

    portrait = Image.fromarray(data.astronaut())
    return portrait.crop((224 - 95, 112 - 95, 224 + 95, 112 + 95)), 95.0


def lfw_patches() -> list[tuple[Image.Image, float]]:
    from skimage import data

    faces = data.lfw_subset()[:100]  # the first 100 are faces, the rest are not
    return [(Image.fromarray((f * 255).astype(np.uint8)).convert("RGB"), 25.0) for f in faces]


def scene(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB").resize(CANVAS)


def paste(canvas: Image.Image, patch: Image.Image, face_px: float, truth: Truth, mirrored: bool):
    """Scale ``patch`` so its face is ``truth.width`` wide, turn it, paste it centred."""
    side = max(1, round(patch.width * truth.width / face_px))
    scaled = patch.resize((side, side), Image.Resampling.BICUBIC)
    scaled = ImageOps.mirror(scaled) if mirrored else scaled
    mask = Image.new("L", scaled.size, 255)
    turned = scaled.rotate(truth.angle, Image.Resampling.BICUBIC, expand=True)
    mask = mask.rotate(truth.angle, Image.Resampling.BILINEAR, expand=True)
    corner = (round(truth.centre.x - turned.width / 2), round(truth.centre.y - turned.height / 2))
    canvas.paste(turned, corner, mask)


def composites(source: str, count: int, seed: int = 0) -> list[Composite]:
    """``count`` scenes with one face of each scale, in a 3 x 2 grid of cells."""
    rng = np.random.default_rng(seed)
    patches = [astronaut_patch()] if source == "astronaut" else lfw_patches()
    cell_w, cell_h = CANVAS[0] // 3, CANVAS[1] // 2
    out = []
    for index in range(count):
        canvas = scene(SCENES[index % len(SCENES)])
        cells = rng.permutation(6)[: len(SCALES)]
        truths = []
        for scale, cell in zip(SCALES, cells, strict=True):
            width = BASE_WIDTH * scale
            reach = width * 0.9  # room for the turned patch inside its cell
            cx = (cell % 3) * cell_w + rng.uniform(reach, cell_w - reach)
            cy = (cell // 3) * cell_h + rng.uniform(reach, cell_h - reach)
            truth = Truth(Point(cx, cy), width, int(rng.choice(ANGLES)))
            patch, face_px = patches[int(rng.integers(len(patches)))]
            paste(canvas, patch, face_px, truth, mirrored=bool(rng.integers(2)))
            truths.append(truth)
        out.append(Composite(source, canvas, truths))
    return out


def matches(face: Face, truth: Truth) -> bool:
    longer = max(face.box.width, face.box.height)
    return face.box.contains(truth.centre) and truth.width / 2 <= longer <= truth.width * 2


def score(faces: list[Face], truths: list[Truth]) -> tuple[list[bool], int]:
    """Which truths were found (each by one detection at most) and the false positives."""
    unused = list(faces)
    found = []
    for truth in truths:
        hit = next((f for f in unused if matches(f, truth)), None)
        found.append(hit is not None)
        if hit is not None:
            unused.remove(hit)
    return found, len(unused)


def size_bin(width: float) -> str:
    low, high = next((lo, hi) for lo, hi in BINS if lo <= width < hi)
    return f"{low}-{high - 1} px" if high < 10_000 else f">= {low} px"
