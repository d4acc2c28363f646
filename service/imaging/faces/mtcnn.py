"""MTCNN: a three-stage cascade of small CNNs with five landmarks (eyes, nose, mouth corners).

P-Net proposes 12 px windows on every level of a pyramid that starts at the scale where the
smallest face asked for spans 12 px; R-Net (24 px) and O-Net (48 px) re-score and refine the
survivors and O-Net places the landmarks, so crops can be levelled by the eyes. Boxes of all
levels are merged by non-maximum suppression. Thresholds are stricter than the paper's
(0.6, 0.7, 0.7) at both ends: P-Net at 0.7 scans faster, O-Net at 0.9 drops the textures
(grass, coins) that pass at 0.7, with no face lost on the bench (bench/faces.py).

The cascade finds faces up to about 20 degrees from upright, so it also runs on copies of
the photo turned both ways by ``turn_degrees`` (a tilted head in a group photo or a selfie
is upright in one of them). The upright pass gets half of the pixels-scanned cap, the turned
ones share the rest; the faces of all passes are merged by the same suppression, each with
the landmarks of the pass that scored it best.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from service.imaging.faces.mtcnn_nets import load_nets
from service.imaging.faces.nms import nms, squared
from service.imaging.faces.pyramid import Pyramid, level
from service.imaging.faces.turns import turned_copies, turned_size
from service.imaging.faces.types import Eyes, Face, Point, order_faces, upright_box

THRESHOLDS = (0.7, 0.7, 0.9)
TIGHT = 0.8  # an MTCNN box is this much of the face or more: search that far below min_size
CHUNK = 256  # crops per R-/O-Net forward: bounds the batch's memory on a crowd
# P-Net's best proposals kept for R-Net, per pass: bounds the later stages' cost on busy
# texture (a crowd of 100 faces gives a few hundred after NMS; grass 500-700).
MAX_PROPOSALS = 2000
# With the upright pass, copies turned +-25 degrees find heads tilted up to about 45 degrees.
TURN_DEGREES = 25.0


def _tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB images -> the nets' N x 3 x H x W input, scaled to about -1..1 as in training."""
    array = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    return (torch.from_numpy(array).permute(0, 3, 1, 2) - 127.5) * 0.0078125


def _refine(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply a net's box regression (offsets are fractions of the box's width / height)."""
    sides = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
    return boxes[:, :4] + offsets * sides


class MTCNNDetector:
    """MTCNN with the facenet-pytorch weights (verified by sha256 at load)."""

    name = "mtcnn"

    def __init__(self, max_pixels: int = 2_000_000, turn_degrees: float = TURN_DEGREES) -> None:
        self.pnet, self.rnet, self.onet = load_nets()
        self.turns = (-turn_degrees, turn_degrees) if turn_degrees else ()
        # Most faces are near upright: that pass keeps half the cap, the turned ones share
        # the other half (without turns the upright pass has all of it).
        upright_share = max_pixels // 2 if self.turns else max_pixels
        self.pyramid = Pyramid(window=12, max_pixels=upright_share)
        self.turned_pyramid = Pyramid(
            window=12, max_pixels=(max_pixels - upright_share) // max(1, len(self.turns))
        )

    def smallest_findable(self, width: int, height: int, min_size: int) -> int:
        found = self.pyramid.smallest_findable(width, height, _search(min_size))
        return max(min_size, math.ceil(found / TIGHT))

    def scanned_pixels(self, width: int, height: int, min_size: int) -> int:
        search = _search(min_size)
        turned = [turned_size(width, height, t) for t in self.turns]
        return self.pyramid.scanned_pixels(width, height, search) + sum(
            self.turned_pyramid.scanned_pixels(w, h, search) for w, h in turned
        )

    @torch.inference_mode()
    def detect(self, image: Image.Image, min_size: int) -> list[Face]:
        """Faces of at least ``min_size`` px; their boxes, framed brows to chin, may be down
        to ``TIGHT`` of that (the bench counts a face found at half to twice its width)."""
        rgb = image.convert("RGB")
        search = _search(min_size)
        boxes, points = self._cascade(rgb, self.pyramid.scales(*rgb.size, search))
        passes = [(boxes, points)]
        # -d and +d turn the photo onto canvases of one size: one pyramid and one resize.
        scales = (
            self.turned_pyramid.scales(*turned_size(*rgb.size, self.turns[0]), search)
            if self.turns
            else []
        )
        if scales:
            # The smallest face is 24 px on the copy (R-Net's input): detail enough, and a
            # 12 MP photo is not turned at full size.
            for copy in turned_copies(rgb, self.turns, min(1.0, 2 * scales[0])):
                boxes, points = self._cascade(copy.image, [s / copy.scale for s in scales])
                passes.append((copy.boxes_to_source(boxes), copy.points_to_source(points)))
        boxes, points = (np.concatenate(found) for found in zip(*passes, strict=True))
        keep = nms(boxes, 0.7, by_smaller=True) if len(boxes) else []
        faces = [_face(boxes[i], points[i], rgb.size) for i in keep]
        return order_faces(faces, search)

    def _cascade(self, rgb: Image.Image, scales: list[float]) -> tuple[np.ndarray, np.ndarray]:
        """P-Net over the pyramid, then R-Net, then O-Net: boxes and landmarks on ``rgb``."""
        boxes = self._propose(rgb, scales)
        boxes = self._stage(rgb, boxes, self.rnet, 24, THRESHOLDS[1])[0]
        return self._stage(rgb, boxes, self.onet, 48, THRESHOLDS[2])

    def _propose(self, rgb: Image.Image, scales: list[float]) -> np.ndarray:
        """P-Net on every level: candidate squares (x1, y1, x2, y2, score) in image pixels."""
        found = []
        for scale in scales:
            probs, offsets = self.pnet(_tensor([level(rgb, scale)]))
            probs, offsets = probs[0].numpy(), offsets[0].numpy()
            ys, xs = np.nonzero(probs >= THRESHOLDS[0])
            if not len(ys):
                continue
            # Output cell (y, x) sees the 12 px window at (2x, 2y) of this level.
            windows = np.stack([2 * xs, 2 * ys, 2 * xs + 12, 2 * ys + 12], axis=1) / scale
            # Columns: window, score, then P-Net's four offsets, kept together through NMS.
            candidates = np.column_stack([windows, probs[ys, xs], offsets[:, ys, xs].T])
            found.append(candidates[nms(candidates, 0.5)])
        if not found:
            return np.zeros((0, 5), np.float32)
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes, 0.7)[:MAX_PROPOSALS]]  # nms gives the best first
        return squared(np.column_stack([_refine(boxes, boxes[:, 5:9]), boxes[:, 4]]))

    def _stage(
        self, rgb: Image.Image, boxes: np.ndarray, net: torch.nn.Module, side: int, threshold: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Re-score the candidate squares on ``side`` px crops; keep, refine, merge them."""
        empty = np.zeros((0, 5), np.float32), np.zeros((0, 10), np.float32)
        # A regression can turn a box inside out; Pillow cannot crop those.
        boxes = boxes[(boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)]
        if not len(boxes):
            return empty
        scores, offsets, points = [], [], []
        for start in range(0, len(boxes), CHUNK):
            chunk = boxes[start : start + CHUNK]
            crops = [
                rgb.crop(tuple(map(round, b[:4]))).resize((side, side), Image.Resampling.BILINEAR)
                for b in chunk
            ]
            score, offset, landmarks = net(_tensor(crops))
            scores.append(score.numpy())
            offsets.append(offset.numpy())
            none = np.zeros((len(chunk), 10), np.float32)  # R-Net places no landmarks
            points.append(none if landmarks is None else landmarks.numpy())
        score, offset, point = (np.concatenate(a) for a in (scores, offsets, points))
        keep = score >= threshold
        if not keep.any():
            return empty
        kept = boxes[keep]
        point = _landmarks(kept, point[keep])
        refined = np.column_stack([_refine(kept, offset[keep]), score[keep]])
        final = side == 48
        order = nms(refined, 0.7, by_smaller=final)
        refined, point = refined[order], point[order]
        return (refined if final else squared(refined)), point


def _search(min_size: int) -> int:
    """The smallest box looked for: a little under ``min_size``, since boxes frame faces tightly."""
    return max(12, round(min_size * TIGHT))


def _landmarks(boxes: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """O-Net's landmarks (x1..x5, y1..y5 as box fractions) -> image pixels, same layout."""
    width, height = boxes[:, 2:3] - boxes[:, 0:1], boxes[:, 3:4] - boxes[:, 1:2]
    xs, ys = boxes[:, 0:1] + raw[:, :5] * width, boxes[:, 1:2] + raw[:, 5:] * height
    return np.concatenate([xs, ys], 1)


def _face(box: np.ndarray, points: np.ndarray, size: tuple[int, int]) -> Face:
    x1, y1, x2, y2, score = map(float, box)
    first = Point(float(points[0]), float(points[5]))
    second = Point(float(points[1]), float(points[6]))
    eyes = Eyes(*sorted((first, second), key=lambda p: p.x))
    return Face(upright_box(x1, y1, x2 - x1, y2 - y1, 1.0, size), min(1.0, score), eyes)
