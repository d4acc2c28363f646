"""The pre stage's job for one image: decode once, then the pixels every encoding needs.

A *view* is one way a backbone sees an image: whole, or as face crops cut to a spec. Tasks
with the same view share its encodings. Without faces, an image is decoded reduced to what
the transform can use and gives one tensor per view. With faces it is decoded at full size
(a 200 px face in a 12 MP photo would shrink under the detector's minimum otherwise), faces
are detected once whatever the number of views, and each view crops and transforms every
kept face: one tensor per face.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from service import metrics
from service.engine.decode import decode_image
from service.engine.faces import Detections, FaceCropper, crop_face
from service.engine.preprocess import Preprocessor
from service.registry.manifest import FaceCropSpec


@dataclass(frozen=True)
class View:
    backbone: str
    crop: FaceCropSpec | None  # None: the whole image
    preprocess: Preprocessor = field(compare=False, repr=False)


@dataclass(frozen=True)
class Prepared:
    """An image's encoder inputs per view (one per kept face, or the whole image), and
    its detections when faces were asked for."""

    name: str
    pixels: dict[View, list[torch.Tensor]]
    detections: Detections | None = None

    def rows(self, view: View) -> int:
        return len(self.pixels[view])


def prepare_whole(name: str, data: bytes, views: list[View]) -> Prepared:
    """Decode once (checks first, reduced for the first view), then each view's transform."""
    start = time.perf_counter()
    decoded = views[0].preprocess.decode(data, name)
    pixels = {view: [view.preprocess.transform(decoded)] for view in views}
    metrics.PREPROCESS_SECONDS.labels(views[0].backbone).observe(time.perf_counter() - start)
    return Prepared(name, pixels)


def prepare_faces(name: str, data: bytes, views: list[View], faces: FaceCropper) -> Prepared:
    """Decode at full size (with every decoding limit), detect once, crop per view."""
    start = time.perf_counter()
    upright = decode_image(data, name, views[0].preprocess.limits)
    detected = time.perf_counter()
    detections = faces.detect(upright)
    metrics.FACE_DETECTION_SECONDS.observe(time.perf_counter() - detected)
    metrics.FACES_PER_IMAGE.observe(detections.found)
    if not detections.found:
        metrics.IMAGES_WITHOUT_FACE.inc()
    pixels = {
        view: [
            view.preprocess.transform(crop_face(upright, face, view.crop.margin, view.crop.size))
            for face in detections.faces
        ]
        for view in views
        if view.crop is not None
    }
    metrics.PREPROCESS_SECONDS.labels(views[0].backbone).observe(time.perf_counter() - start)
    return Prepared(name, pixels, detections)
