"""The pre stage: a request's admission, then each image's bytes -> the tensors its encodings
need, in a thread pool.

Admission: a request's images are admitted only while the encoder queue would drain
within the target wait at the measured throughput, so the queue bound follows the hardware.
An idle encoder always admits (a big request on a slow machine is slow, not refused).

One :class:`Admission` ledger per encoder counts the images reserved, queued and running.
A request takes a :class:`Reservation` before any decoding; the reservation travels with it
and the micro-batcher, which receives it with the rows, converts it into queued images
(growing it first when faces gave more rows than images, admitted as a new request would
be). The batcher settles the ledger after every batch and feeds it the throughput it saw.

The pool's queue is bounded by admission: a request reserves encoder room for its images
before it is decoded, so at most the admitted images wait here. The first image that fails
stops its request's other jobs.

The job for one image: decode once, then the pixels every encoding needs. A *view* is one
way a backbone sees an image: whole, or as face crops cut to a spec. Tasks with the same
view share its encodings. Without faces, an image is decoded reduced to what the transform
can use and gives one tensor per view. With faces it is decoded at full size
(a 200 px face in a 12 MP photo would shrink under the detector's minimum otherwise), faces
are detected once whatever the number of views, and each view crops and transforms every
kept face: one tensor per face.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from service import metrics
from service.errors import Overloaded, ShuttingDown, TooManyImages, retry_after
from service.imaging import Preprocessor, decode_image
from service.imaging.faces import Detections, FaceCropper, crop_face
from service.registry.manifest import FaceCropSpec

T = TypeVar("T")
R = TypeVar("R")

RATE_SMOOTHING = 0.2  # weight of the newest batch in the throughput estimate


class Admission:
    def __init__(self, *, target_wait_s: float, max_queued: int, img_s: float = 0.0) -> None:
        """``img_s``: the throughput measured for the encoder's layout at start-up (0: not
        measured yet; an unmeasured encoder admits everything up to ``max_queued``)."""
        self.target_wait_s = target_wait_s
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._pending = 0  # reserved + queued + running images
        self._rate = img_s  # images per second, all workers
        self._closed = False

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def throughput(self) -> float:
        return self._rate

    @property
    def expected_wait_s(self) -> float:
        """How long a newly queued image would wait at the measured throughput."""
        return self._pending / self._rate if self._rate > 0 else 0.0

    def reserve(self, count: int) -> Reservation:
        """Admit ``count`` images now or refuse at once: a busy encoder admits while the
        queue would drain within the target wait and holds fewer than ``max_queued``."""
        reservation = Reservation(self, 0)
        reservation.resize(count)
        return reservation

    def check(self, count: int = 1) -> None:
        """Raise what :meth:`reserve` would, without reserving: lets a request be refused
        before its body is read, so a flood of uploads costs little."""
        with self._lock:
            self._check(count, extra=count, ahead=self._pending)

    def close(self) -> None:
        """Refuse every new reservation (503): the encoder is stopping."""
        self._closed = True

    def measured(self, img_s: float) -> None:
        """A throughput measured by calibration replaces the estimate."""
        with self._lock:
            self._rate = img_s

    def observe(self, img_s: float) -> None:
        """A batch's throughput, smoothed into the estimate admission uses."""
        with self._lock:
            self._rate = (
                img_s
                if self._rate <= 0
                else (1 - RATE_SMOOTHING) * self._rate + RATE_SMOOTHING * img_s
            )

    def settle(self, count: int) -> None:
        """``count`` images left the encoder (answered or failed): their room is free."""
        with self._lock:
            self._pending -= count

    def _resize(self, reservation: Reservation, count: int) -> None:
        extra = count - reservation.count
        with self._lock:
            if extra > 0:
                self._check(count, extra, ahead=self._pending - reservation.count)
            self._pending += extra
            reservation.count = count

    def _check(self, count: int, extra: int, ahead: int) -> None:
        """``count``: the request's whole size, ``ahead``: other requests' images. Growing
        past the hard cap alone is 413; past the target wait, 429 with the seconds until
        the images ahead have drained."""
        if self._closed:
            raise ShuttingDown()
        if count > self.max_queued:
            raise TooManyImages(
                f"{count} images can never fit the encoder queue of {self.max_queued}"
            )
        rate = self._rate
        wait = (self._pending + extra) / rate if rate > 0 else 0.0
        if ahead and (self._pending + extra > self.max_queued or wait > self.target_wait_s):
            drain_s = ahead / rate if rate > 0 else 1.0
            raise Overloaded(
                f"{ahead} images are ahead (about {drain_s:.1f} s of work at "
                f"{rate:.1f} img/s; target wait {self.target_wait_s:g} s); retry later",
                headers=retry_after(drain_s),
            )


class Reservation:
    """Room for a request's images, held from admission until they are queued (or the
    request fails before that, when :meth:`release` gives the room back)."""

    def __init__(self, ledger: Admission, count: int) -> None:
        self._ledger = ledger
        self.count = count

    def resize(self, count: int) -> None:
        """Hold room for ``count`` images instead (the faces found after decoding, each
        encoded as one image): growing is admitted as a new request would be, shrinking
        gives the room back at once."""
        self._ledger._resize(self, count)

    def queued(self, count: int) -> None:
        """``count`` images were queued under this reservation: from now on the batcher
        accounts for them (it settles the ledger after each batch)."""
        self.resize(count)
        self.count = 0

    def release(self) -> None:
        count, self.count = self.count, 0
        if count:
            self._ledger.settle(count)


# -- decoding and transforms in the pool ------------------------------------------------
@dataclass(frozen=True)
class NamedImage:
    """One uploaded image: what a request brings to the engine."""

    name: str
    data: bytes


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
