"""OpenCV's YuNet (``cv2.FaceDetectorYN``): a small CNN with eye landmarks, more robust to
pose than Haar. Used only when the operator gives the ONNX file; nothing is downloaded.
It runs on a copy scaled so that the smallest face asked for spans its smallest anchor.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from service.imaging.faces.pyramid import OneCopy
from service.imaging.faces.types import (
    Eyes,
    Face,
    Point,
    order_faces,
    upright_box,
    working_copy,
)

ANCHOR_PX = 16  # YuNet's smallest anchors are ~10 px; 16 leaves it some margin


class YuNetDetector(OneCopy):
    """YuNet on an RGB copy of at most ``max_pixels`` pixels."""

    name = "yunet"
    window = ANCHOR_PX

    def __init__(
        self,
        model: Path,
        max_pixels: int = 2_000_000,
        score_threshold: float = 0.6,
        nms: float = 0.3,
    ) -> None:
        if not model.is_file():
            raise FileNotFoundError(
                f"YuNet model {model} is not a file; give the path of a "
                "face_detection_yunet_*.onnx you have downloaded (the service fetches nothing)"
            )
        self.model = model
        self.max_pixels = max_pixels
        self.score_threshold = score_threshold
        self.nms = nms
        self._local = threading.local()
        self._net((320, 320))  # fail at start-up, not on the first request, if it is unusable

    def _net(self, size: tuple[int, int]) -> cv2.FaceDetectorYN:
        net = getattr(self._local, "net", None)
        if net is None:
            net = self._local.net = cv2.FaceDetectorYN.create(
                str(self.model), "", size, self.score_threshold, self.nms
            )
        net.setInputSize(size)
        return net

    def detect(self, image: Image.Image, min_size: int) -> list[Face]:
        scale = self.copy_scale(*image.size, min_size)
        rgb = working_copy(image, scale, "RGB")
        bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
        _, rows = self._net(rgb.size).detect(bgr)
        faces = [] if rows is None else [face_from_row(row, scale, image.size) for row in rows]
        return order_faces(faces, min_size)


def face_from_row(row: np.ndarray, scale: float, size: tuple[int, int]) -> Face:
    """One YuNet output row (box, 5 landmarks, score) mapped back to the upright image."""
    first = Point(float(row[4]) / scale, float(row[5]) / scale)
    second = Point(float(row[6]) / scale, float(row[7]) / scale)
    eyes = Eyes(*sorted((first, second), key=lambda p: p.x))
    score = min(1.0, max(0.0, float(row[14])))
    return Face(upright_box(*map(float, row[:4]), scale, size), score, eyes)
