"""The inference engine: pre (decode) -> core (batcher + tower) -> post (matching).

Built by :func:`service.engine.factory.build_engine`. It answers ``predict`` with complete
typed results and knows nothing of HTTP. Tasks that share a backbone share one encoding
per image; each image is decoded once, whatever the number of backbones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch

from service import metrics
from service.engine.batcher import MicroBatcher, Reservation
from service.engine.device import Placement
from service.engine.post import TaskRuntime
from service.engine.pre import PreStage
from service.engine.preprocess import Preprocessor
from service.engine.results import ImageResult, TaskPrediction
from service.engine.runtimes.base import MeasuredEncoder, RuntimeInfo
from service.errors import DeadlineExceeded, UnknownTask
from service.registry.manifest import BackboneManifest, TaskManifest


@dataclass(frozen=True)
class NamedImage:
    name: str
    data: bytes


class BackboneRuntime:
    """One vision tower with its eval transform and its micro-batcher."""

    def __init__(
        self,
        manifest: BackboneManifest,
        tower: MeasuredEncoder,
        preprocess: Preprocessor,
        batcher: MicroBatcher,
    ) -> None:
        self.id = manifest.id
        self.manifest = manifest
        self.tower = tower
        self.preprocess = preprocess
        self.batcher = batcher


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
    ) -> None:
        self.backbones = backbones
        self.tasks = tasks
        self.placement = placement
        self._pre = pre

    # -- life cycle ----------------------------------------------------------------------
    def start(self, calibrate_batch_size: bool) -> None:
        """Warm every tower, measure its throughput (and batch size), start its workers."""
        for runtime in self.backbones.values():
            runtime.tower.warm_up()
            runtime.batcher.calibrate(search_batch_size=calibrate_batch_size)
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
            raise UnknownTask(
                f"unknown task {name!r}; served tasks: {', '.join(sorted(self.tasks))}"
            ) from None

    def describe(self, name: str) -> tuple[TaskManifest, BackboneManifest, RuntimeInfo]:
        task = self.task(name)
        backbone = self.backbones[task.manifest.backbone]
        return task.manifest, backbone.manifest, backbone.tower.runtime_info

    # -- predict -------------------------------------------------------------------------
    async def predict(
        self,
        images: Sequence[NamedImage],
        task_names: Sequence[str],
        deadline_s: float | None = None,
    ) -> list[ImageResult]:
        """Per image, a complete prediction for every task asked.

        Admission comes first (429 before any decoding); past ``deadline_s`` the request's
        queued images are withdrawn and it fails with :class:`DeadlineExceeded`.
        """
        tasks = [self.task(name) for name in dict.fromkeys(task_names)]
        groups: dict[str, list[TaskRuntime]] = {}
        for task in tasks:
            groups.setdefault(task.manifest.backbone, []).append(task)
        with self._admit(list(groups), len(images)) as reservations:
            try:
                return await asyncio.wait_for(self._run(images, groups, reservations), deadline_s)
            except TimeoutError:
                raise DeadlineExceeded(
                    f"no answer within the {deadline_s:g} s deadline; the service is saturated"
                ) from None

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
        groups: dict[str, list[TaskRuntime]],
        reservations: dict[str, Reservation],
    ) -> list[ImageResult]:
        backbones = [self.backbones[backbone_id] for backbone_id in groups]
        pixels = await self._pre.map(lambda image: _prepare(image, backbones), images)
        answers = await asyncio.gather(
            *(
                self._encode_and_match(
                    runtime,
                    [p[runtime.id] for p in pixels],
                    groups[runtime.id],
                    reservations[runtime.id],
                )
                for runtime in backbones
            )
        )
        results = [ImageResult(image.name) for image in images]
        for per_task in answers:
            for name, predictions in per_task.items():
                for result, prediction in zip(results, predictions, strict=True):
                    result.predictions[name] = prediction
        return results

    async def _encode_and_match(
        self,
        runtime: BackboneRuntime,
        pixels: list[torch.Tensor],
        tasks: list[TaskRuntime],
        reservation: Reservation,
    ) -> dict[str, list[TaskPrediction]]:
        features = torch.stack(await runtime.batcher.encode(pixels, reservation))
        return await asyncio.to_thread(lambda: {task.name: task.answer(features) for task in tasks})


def _prepare(image: NamedImage, backbones: list[BackboneRuntime]) -> dict[str, torch.Tensor]:
    """Decode once (checks first), then each backbone's eval transform."""
    start = time.perf_counter()
    decoded = backbones[0].preprocess.decode(image.data, image.name)
    pixels = {runtime.id: runtime.preprocess.transform(decoded) for runtime in backbones}
    metrics.PREPROCESS_SECONDS.labels(backbones[0].id).observe(time.perf_counter() - start)
    return pixels
