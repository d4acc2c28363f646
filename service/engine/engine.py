"""The inference engine: pre (admit, decode) -> core (batcher + tower) -> post (matching).

Built by :func:`service.engine.factory.build_engine`. It answers ``predict`` with complete
typed results and knows nothing of HTTP. Tasks that share a backbone (and, with faces, a
crop) share one encoding per image or face; each image is decoded once, and its faces
detected once, whatever the number of backbones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import torch

from service import metrics
from service.engine import post
from service.engine.core.batcher import MicroBatcher
from service.engine.core.device import Placement
from service.engine.core.runtimes.base import MeasuredEncoder, RuntimeInfo
from service.engine.post import Answers, ServedTask
from service.engine.pre import Admission, NamedImage, Prepared, PreStage, Reservation, View
from service.errors import DeadlineExceeded, NotReady, UnknownTask, retry_after
from service.imaging import Preprocessor
from service.imaging.faces import FaceCropper
from service.registry.manifest import BackboneManifest, TaskManifest


class ServedBackbone:
    """One vision tower with its eval transform, its admission ledger, its micro-batcher
    and its face cropper."""

    def __init__(
        self,
        manifest: BackboneManifest,
        tower: MeasuredEncoder,
        preprocess: Preprocessor,
        batcher: MicroBatcher,
        faces: FaceCropper,
    ) -> None:
        self.admission: Admission = batcher.admission
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
        backbones: dict[str, ServedBackbone],
        tasks: dict[str, ServedTask],
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
        for backbone in self.backbones.values():
            backbone.tower.warm_up()
            if backbone.admission.throughput <= 0:
                backbone.batcher.calibrate(search_batch_size=False)
            backbone.batcher.start()

    def stop(self) -> None:
        """Finish queued work and end every thread. Blocks: call it off the event loop."""
        for backbone in self.backbones.values():
            backbone.batcher.stop()
        self._pre.stop()

    # -- what is served ------------------------------------------------------------------
    def task(self, name: str) -> ServedTask:
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
            self.backbones[backbone_id].admission.check()

    # -- predict -------------------------------------------------------------------------
    async def predict(
        self,
        images: Sequence[NamedImage],
        task_names: Sequence[str],
        deadline_s: float | None = None,
        faces: bool = False,
    ) -> Answers:
        """Per image, a complete prediction for every task asked; with ``faces``, one per
        detected face instead (largest first), each face counted as one image.

        Admission comes first (429 before any decoding), for one row per image; once faces
        are found the reservation grows or shrinks to one row per face. Past ``deadline_s``
        the request's queued images are withdrawn and it fails with :class:`DeadlineExceeded`.
        """
        tasks = [self.task(name) for name in dict.fromkeys(task_names)]
        views: dict[View, list[ServedTask]] = {}
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

    def _view(self, task: ServedTask, faces: bool) -> View:
        """How ``task`` sees an image: whole, or face crops cut as it was trained (its
        manifest's crop), else as the settings say for its backbone's input size."""
        backbone = self.backbones[task.manifest.backbone]
        crop = (task.manifest.crop or backbone.faces.spec) if faces else None
        return View(backbone.id, crop, backbone.preprocess)

    @contextmanager
    def _admit(self, backbone_ids: list[str], count: int) -> Iterator[dict[str, Reservation]]:
        with ExitStack() as stack:
            reservations = {}
            for backbone_id in backbone_ids:
                reservation = self.backbones[backbone_id].admission.reserve(count)
                stack.callback(reservation.release)
                reservations[backbone_id] = reservation
            yield reservations

    async def _run(
        self,
        images: Sequence[NamedImage],
        views: dict[View, list[ServedTask]],
        reservations: dict[str, Reservation],
        faces: bool,
    ) -> Answers:
        """Forward through the stages: pre (every image), core (every backbone's rows in one
        submission each, side by side), post (every task's answers, then per image)."""
        order = list(views)
        detector = self.backbones[order[0].backbone].faces if faces else None
        prepared = await self._pre.prepare(images, order, detector)
        encoded = await asyncio.gather(
            *(
                self._encode(self.backbones[backbone_id], order, prepared, reservation)
                for backbone_id, reservation in reservations.items()
            )
        )
        features = {view: rows for per_backbone in encoded for view, rows in per_backbone.items()}
        return await asyncio.to_thread(post.answer, prepared, views, features)

    async def _encode(
        self,
        backbone: ServedBackbone,
        order: list[View],
        prepared: list[Prepared],
        reservation: Reservation,
    ) -> dict[View, torch.Tensor | None]:
        """This backbone's rows, view by view, in one submission; per view its features
        (None for a view without rows: no face in any image)."""
        mine = [view for view in order if view.backbone == backbone.id]
        rows = [pixels for view in mine for p in prepared for pixels in p.pixels[view]]
        encoded = await backbone.batcher.encode(rows, reservation) if rows else []
        features, start = {}, 0
        for view in mine:
            count = sum(p.rows(view) for p in prepared)
            chunk = encoded[start : start + count]
            start += count
            features[view] = torch.stack(chunk) if chunk else None
        return features
