"""The pre stage: each image's bytes -> the tensors its encodings need, in a thread pool.

Its queue is bounded by admission: a request reserves encoder room for its images before
it is decoded (:mod:`service.engine.admission`), so at most the admitted images wait
here. The first image that fails stops its request's other jobs.

The job for one image: decode once, then the pixels every encoding needs. A *view* is one
way a backbone sees an image: whole, or as face crops cut to a spec. Tasks with the same
view share its encodings. Without faces, an image is decoded reduced to what
the transform can use and gives one tensor per view. With faces it is decoded at full size
(a 200 px face in a 12 MP photo would shrink under the detector's minimum otherwise), faces
are detected once whatever the number of views, and each view crops and transforms every
kept face: one tensor per face.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import torch

from service import metrics
from service.imaging import Preprocessor, decode_image
from service.imaging.faces import Detections, FaceCropper, crop_face
from service.registry.manifest import FaceCropSpec

if TYPE_CHECKING:
    from service.engine.engine import NamedImage

T = TypeVar("T")
R = TypeVar("R")


class PreStage:
    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="preprocess")

    async def map(self, job: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``job`` over ``items`` in the pool, in order. On the first failure the jobs not
        yet started are cancelled and the error of the earliest failed item is raised."""
        loop = asyncio.get_running_loop()
        futures = [loop.run_in_executor(self._pool, job, item) for item in items]
        try:
            await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for future in futures:
                future.cancel()  # no-op for finished ones; unstarted jobs never run
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        return [future.result() for future in futures]

    async def prepare(
        self, images: Sequence[NamedImage], views: list[View], faces: FaceCropper | None
    ) -> list[Prepared]:
        """Every image's encoder inputs for ``views``, in order: whole images, or (with a
        face cropper) one input per kept face."""
        if faces is None:
            return await self.map(
                lambda image: prepare_whole(image.name, image.data, views), images
            )
        return await self.map(
            lambda image: prepare_faces(image.name, image.data, views, faces), images
        )

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


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
