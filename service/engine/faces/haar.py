"""OpenCV's frontal-face Haar cascade: bundled in the opencv-python(-headless) 4.x wheels.

It needs no download (5.x ships no cascades, hence the ``<5`` pin) and is DeepFace's
default. It finds frontal faces; profiles, strong tilts and faces under ~30 working
pixels are missed. It gives no landmarks, so its crops are not levelled.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from service.engine.faces.types import Face, order_faces, upright_box, working_copy

CASCADE = "haarcascade_frontalface_default.xml"
WINDOW_PX = 24  # the cascade's training window: nothing smaller is ever found


class HaarDetector:
    """Haar cascade on a grayscale copy whose longest side is at most ``max_side``."""

    name = "haar"

    def __init__(
        self,
        max_side: int = 640,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        cascade: Path | None = None,
    ) -> None:
        self.max_side = max_side
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

    def smallest_findable(self, width: int, height: int, min_size: int) -> int:
        """The smallest face side, in upright pixels, this detector can report for an image."""
        scale = min(1.0, self.max_side / max(width, height))
        return max(min_size, math.ceil(WINDOW_PX / scale))

    def detect(self, image: Image.Image, min_size: int) -> list[Face]:
        gray, scale = working_copy(image, self.max_side, "L")
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
