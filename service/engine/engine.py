"""The inference engine: pre (decode) -> core (batcher + tower) -> post (matching).

Built by :func:`service.engine.factory.build_engine`. It answers ``predict`` with complete
typed results and knows nothing of HTTP. Tasks that share a backbone (and, with faces, a
crop) share one encoding per image or face; each image is decoded once, and its faces
detected once, whatever the number of backbones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch

from service import metrics
from service.engine.batcher import MicroBatcher, Reservation
from service.engine.device import Placement
from service.engine.faces import FaceCropper
from service.engine.post import TaskRuntime
from service.engine.pre import PreStage
from service.engine.prepare import Prepared, View, prepare_faces, prepare_whole
from service.engine.preprocess import Preprocessor
from service.engine.results import FaceResult, ImageResult, TaskPrediction
from service.engine.runtimes.base import MeasuredEncoder, RuntimeInfo
from service.errors import DeadlineExceeded, NotReady, UnknownTask, retry_after
from service.registry.manifest import BackboneManifest, TaskManifest


@dataclass(frozen=True)
class NamedImage:
    name: str
    data: bytes


class BackboneRuntime:
    """One vision tower with its eval transform, its micro-batcher and its face cropper."""

    def __init__(
        self,
        manifest: BackboneManifest,
        tower: MeasuredEncoder,
        preprocess: Preprocessor,
        batcher: MicroBatcher,
        faces: FaceCropper,
    ) -> None:
        self.id = manifest.id
        self.manifest = manifest
        self.tower = tower
        self.preprocess = preprocess
        self.batcher = batcher
        self.faces = faces  # detector + the settings' crop for this tower's input size


def observe_batch(backbone_id: str, size: int, seconds: float, waits: list[float]) -> None:
    """The core stage's metrics, fed by the batcher's workers after every batch."""
    metrics.BATCH_SIZE.labels(backbone_id).observe(size)
    metrics.INFERENCE_SECONDS.labels(backbone_id).observe(seconds)
    for wait in waits:
        metrics.QUEUE_WAIT_SECONDS.labels(backbone_id).observe(wait)


class InferenceEngine:
    def __init__(
        self,
        backbones: dict[str, BackboneRuntime],
        tasks: dict[str, TaskRuntime],
        placement: Placement,
        pre: PreStage,
        failed_tasks: dict[str, str] | None = None,
    ) -> None:
        self.backbones = backbones
        self.tasks = tasks
        self.placement = placement
        self.failed_tasks = failed_tasks or {}  # task -> why it could not be loaded
        self._pre = pre

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Warm every tower and start its workers (in the layout measured when it was built;
        a batcher built without a measured rate measures its own first)."""
        for runtime in self.backbones.values():
            runtime.tower.warm_up()
            if runtime.batcher.throughput <= 0:
                runtime.batcher.calibrate(search_batch_size=False)
            runtime.batcher.start()

    def stop(self) -> None:
        """Finish queued work and end every thread. Blocks: call it off the event loop."""
        for runtime in self.backbones.values():
            runtime.batcher.stop()
        self._pre.stop()

    # -- what is served ------------------------------------------------------------------
    def task(self, name: str) -> TaskRuntime:
        try:
            return self.tasks[name]
        except KeyError:
            if name in self.failed_tasks:
                raise NotReady(
                    f"task {name!r} failed to load: {self.failed_tasks[name]}",
                    headers=retry_after(30),
                ) from None
            raise UnknownTask(
                f"unknown task {name!r}; served tasks: {', '.join(sorted(self.tasks))}"
            ) from None

    def describe(self, name: str) -> tuple[TaskManifest, BackboneManifest, RuntimeInfo]:
        task = self.task(name)
        backbone = self.backbones[task.manifest.backbone]
        return task.manifest, backbone.manifest, backbone.tower.runtime_info

    def check_admission(self, task_names: Sequence[str]) -> None:
        """Refuse now (429) if the tasks' encoders are already past the target wait."""
        for backbone_id in {self.task(name).manifest.backbone for name in task_names}:
            self.backbones[backbone_id].batcher.check()

    # -- predict -------------------------------------------------------------------------
    async def predict(
        self,
        images: Sequence[NamedImage],
        task_names: Sequence[str],
        deadline_s: float | None = None,
        faces: bool = False,
    ) -> list[ImageResult]:
        """Per image, a complete prediction for every task asked; with ``faces``, one per
        detected face instead (largest first), each face counted as one image.

        Admission comes first (429 before any decoding), for one row per image; once faces
        are found the reservation grows or shrinks to one row per face. Past ``deadline_s``
        the request's queued images are withdrawn and it fails with :class:`DeadlineExceeded`.
        """
        tasks = [self.task(name) for name in dict.fromkeys(task_names)]
        views: dict[View, list[TaskRuntime]] = {}
        for task in tasks:
            views.setdefault(self._view(task, faces), []).append(task)
        backbone_ids = list(dict.fromkeys(view.backbone for view in views))
        with self._admit(backbone_ids, len(images)) as reservations:
            try:
                run = self._run(images, views, reservations, faces)
                return await asyncio.wait_for(run, deadline_s)
            except TimeoutError:
                raise DeadlineExceeded(
                    f"no answer within the {deadline_s:g} s deadline; the service is saturated"
                ) from None

    def _view(self, task: TaskRuntime, faces: bool) -> View:
        """How ``task`` sees an image: whole, or face crops cut as it was trained (its
        manifest's crop), else as the settings say for its backbone's input size."""
        runtime = self.backbones[task.manifest.backbone]
        crop = (task.manifest.crop or runtime.faces.spec) if faces else None
        return View(runtime.id, crop, runtime.preprocess)

    @contextmanager
    def _admit(self, backbone_ids: list[str], count: int) -> Iterator[dict[str, Reservation]]:
        with ExitStack() as stack:
            reservations = {}
            for backbone_id in backbone_ids:
                reservation = self.backbones[backbone_id].batcher.reserve(count)
                stack.callback(reservation.release)
                reservations[backbone_id] = reservation
            yield reservations

    async def _run(
        self,
        images: Sequence[NamedImage],
        views: dict[View, list[TaskRuntime]],
        reservations: dict[str, Reservation],
        faces: bool,
    ) -> list[ImageResult]:
        order = list(views)
        if faces:
            detector = self.backbones[order[0].backbone].faces
            prepared = await self._pre.map(
                lambda image: prepare_faces(image.name, image.data, order, detector), images
            )
        else:
            prepared = await self._pre.map(
                lambda image: prepare_whole(image.name, image.data, order), images
            )
        for backbone_id, reservation in reservations.items():
            mine = [view for view in order if view.backbone == backbone_id]
            reservation.resize(sum(p.rows(view) for view in mine for p in prepared))
        answers = await asyncio.gather(
            *(
                self._encode_and_match(
                    self.backbones[backbone_id],
                    {view: views[view] for view in order if view.backbone == backbone_id},
                    prepared,
                    reservation,
                )
                for backbone_id, reservation in reservations.items()
            )
        )
        return assemble(prepared, {view: a for per_view in answers for view, a in per_view.items()})

    async def _encode_and_match(
        self,
        runtime: BackboneRuntime,
        views: dict[View, list[TaskRuntime]],
        prepared: list[Prepared],
        reservation: Reservation,
    ) -> dict[View, dict[str, list[TaskPrediction]]]:
        """Every row of this backbone's views in one submission, then each view's tasks."""
        rows = [pixels for view in views for p in prepared for pixels in p.pixels[view]]
        encoded = await runtime.batcher.encode(rows, reservation) if rows else []

        def match() -> dict[View, dict[str, list[TaskPrediction]]]:
            answers, start = {}, 0
            for view, tasks in views.items():
                count = sum(p.rows(view) for p in prepared)
                chunk = encoded[start : start + count]
                start += count
                features = torch.stack(chunk) if chunk else None
                answers[view] = {
                    task.name: [] if features is None else task.answer(features) for task in tasks
                }
            return answers

        return await asyncio.to_thread(match)


def assemble(
    prepared: list[Prepared], answers: dict[View, dict[str, list[TaskPrediction]]]
) -> list[ImageResult]:
    """Rows back to their images (and faces), in the order they were submitted."""
    streams = {
        (view, name): iter(predictions)
        for view, per_task in answers.items()
        for name, predictions in per_task.items()
    }
    results = []
    for image in prepared:
        if image.detections is None:
            predictions = {name: next(rows) for (_, name), rows in streams.items()}
            results.append(ImageResult(image.name, predictions))
            continue
        faces = [FaceResult(face.box, face.score) for face in image.detections.faces]
        for (_, name), rows in streams.items():
            for face in faces:
                face.predictions[name] = next(rows)
        results.append(ImageResult(image.name, faces=faces, faces_found=image.detections.found))
    return results
