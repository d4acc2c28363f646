"""OpenCV's frontal-face Haar cascade: bundled in the opencv-python(-headless) 4.x wheels.

It needs no download (5.x ships no cascades, hence the ``<5`` pin) and is DeepFace's
default; here it is the fallback when the MTCNN weights are not installed. It finds frontal
faces; profiles and strong tilts are missed. It gives no landmarks, so its crops are not
levelled. It runs on a copy scaled so that the smallest face asked for spans its 24 px window.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from service.imaging.faces.pyramid import OneCopy
from service.imaging.faces.types import Face, order_faces, upright_box, working_copy

CASCADE = "haarcascade_frontalface_default.xml"
WINDOW_PX = 24  # the cascade's training window: nothing smaller is ever found


class HaarDetector(OneCopy):
    """Haar cascade on a grayscale copy of at most ``max_pixels`` pixels."""

    name = "haar"
    window = WINDOW_PX

    def __init__(
        self,
        max_pixels: int = 2_000_000,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        cascade: Path | None = None,
    ) -> None:
        self.max_pixels = max_pixels
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.cascade_path = cascade or Path(cv2.data.haarcascades) / CASCADE
        if cv2.CascadeClassifier(str(self.cascade_path)).empty():
            raise FileNotFoundError(f"no Haar cascade could be loaded from {self.cascade_path}")
        # A classifier keeps scratch buffers between calls: one per preprocessing thread.
        self._local = threading.local()

    def _classifier(self) -> cv2.CascadeClassifier:
        classifier = getattr(self._local, "classifier", None)
        if classifier is None:
            classifier = self._local.classifier = cv2.CascadeClassifier(str(self.cascade_path))
        return classifier

    def detect(self, image: Image.Image, min_size: int) -> list[Face]:
        scale = self.copy_scale(*image.size, min_size)
        gray = working_copy(image, scale, "L")
        window = max(WINDOW_PX, math.ceil(min_size * scale))
        if min(gray.size) < window:
            return []
        boxes, _levels, weights = self._classifier().detectMultiScale3(
            np.asarray(gray),
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(window, window),
            outputRejectLevels=True,
        )
        faces = [
            Face(upright_box(*map(float, box), scale, image.size), score=_squash(float(weight)))
            for box, weight in zip(boxes, np.ravel(weights), strict=True)
        ]
        return order_faces(faces, min_size)


def _squash(weight: float) -> float:
    """The last stage's summed weight (about -2..10) through a logistic: a 0..1 ranking."""
    return 1.0 / (1.0 + math.exp(-weight))
