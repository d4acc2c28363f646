"""The inference engine: one vision tower and micro-batcher per backbone, tasks on top.

Tasks that share a backbone share one forward pass per image.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from service import metrics
from service.config import Settings
from service.engine.batcher import MicroBatcher
from service.engine.device import Placement, encoder_layout
from service.engine.matching import Summary, rank_probabilities, summarize
from service.engine.preprocess import ImageLimits, Preprocessor
from service.engine.vision import VisionTower
from service.errors import DeadlineExceeded, UnknownTask
from service.registry import LoadedBackbone, LoadedTask, RegistrySnapshot
from service.registry.manifest import TaskManifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NamedImage:
    name: str
    data: bytes


@dataclass(frozen=True)
class TaskRuntime:
    manifest: TaskManifest
    prototypes: torch.Tensor
    values: np.ndarray

    @classmethod
    def from_loaded(cls, loaded: LoadedTask) -> TaskRuntime:
        values = np.asarray(loaded.manifest.values, dtype=np.float64)
        return cls(loaded.manifest, loaded.prototypes, values)

    def summarize(self, features: torch.Tensor, level: float) -> list[Summary]:
        probabilities = rank_probabilities(features, self.prototypes, self.manifest.logit_scale)
        return [summarize(row, self.values, level) for row in probabilities.double().numpy()]

    def observe(self, summaries: list[Summary]) -> None:
        """Feed the drift metrics: the predicted value and its position in the range."""
        task = self.manifest.task
        low, high = self.values[0], self.values[-1]
        metrics.IMAGES.labels(task).inc(len(summaries))
        for summary in summaries:
            metrics.PREDICTED_VALUE.labels(task).observe(summary.expected)
            metrics.PREDICTED_POSITION.labels(task).observe((summary.expected - low) / (high - low))


class BackboneRuntime:
    """A vision tower, its preprocessing and its batcher."""

    def __init__(self, loaded: LoadedBackbone, placement: Placement, settings: Settings) -> None:
        self.id = loaded.manifest.id
        self.manifest = loaded.manifest
        self.tower = VisionTower(loaded, placement)
        self.preprocess = Preprocessor(
            loaded.manifest.preprocess,
            ImageLimits(
                max_pixels=settings.max_image_pixels,
                max_bytes=settings.max_image_bytes,
                max_aspect_ratio=settings.max_aspect_ratio,
                formats=settings.format_set(),
            ),
        )
        workers, cores = encoder_layout(placement, settings.encoder_workers, settings.torch_threads)
        self.threads_per_worker = None if cores is None else max(1, cores // workers)
        self.batcher = MicroBatcher(
            self.tower.encode,
            name=self.id,
            max_batch_size=settings.max_batch_size or 1,
            max_batch_delay_s=settings.max_batch_delay_ms / 1000.0,
            max_queued=settings.max_queued_images,
            on_batch=self._observe_batch,
            workers=workers,
            threads=cores,
        )
        metrics.QUEUE_DEPTH.labels(self.id).set_function(lambda: self.batcher.pending)

    def _observe_batch(self, size: int, seconds: float, waits: list[float]) -> None:
        metrics.BATCH_SIZE.labels(self.id).observe(size)
        metrics.INFERENCE_SECONDS.labels(self.id).observe(seconds)
        for wait in waits:
            metrics.QUEUE_WAIT_SECONDS.labels(self.id).observe(wait)

    def preprocess_timed(self, image: NamedImage) -> torch.Tensor:
        start = time.perf_counter()
        pixels = self.preprocess(image.data, image.name)
        metrics.PREPROCESS_SECONDS.labels(self.id).observe(time.perf_counter() - start)
        return pixels


class InferenceEngine:
    def __init__(
        self, snapshot: RegistrySnapshot, placement: Placement, settings: Settings
    ) -> None:
        self.placement = placement
        self.interval_level = settings.interval_level
        self.backbones = {
            backbone_id: BackboneRuntime(loaded, placement, settings)
            for backbone_id, loaded in snapshot.backbones.items()
        }
        self.tasks = {name: TaskRuntime.from_loaded(t) for name, t in snapshot.tasks.items()}
        self._pool = ThreadPoolExecutor(
            settings.preprocess_workers, thread_name_prefix="preprocess"
        )

    def warm_up(self, calibrate: bool = False) -> None:
        """Warm every tower; with ``calibrate``, also measure and set its best batch size."""
        for runtime in self.backbones.values():
            runtime.tower.warm_up()
            if calibrate:
                runtime.batcher.max_batch_size = runtime.tower.calibrate_batch_size(
                    threads=runtime.threads_per_worker
                )

    def task(self, name: str) -> TaskRuntime:
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTask(
                f"unknown task {name!r}; served tasks: {', '.join(sorted(self.tasks))}"
            ) from None

    async def predict(
        self,
        images: Sequence[NamedImage],
        task_names: Sequence[str],
        deadline_s: float | None = None,
    ) -> list[dict[str, Summary]]:
        """Per image, a summary for every task asked; one encoding per image and backbone.

        Past ``deadline_s`` the request's queued images are withdrawn and it fails with
        :class:`DeadlineExceeded`.
        """
        try:
            return await asyncio.wait_for(self._predict(images, task_names), deadline_s)
        except TimeoutError:
            raise DeadlineExceeded(
                f"no answer within the {deadline_s:g} s deadline; the service is saturated"
            ) from None

    async def _predict(
        self, images: Sequence[NamedImage], task_names: Sequence[str]
    ) -> list[dict[str, Summary]]:
        tasks = {name: self.task(name) for name in task_names}
        groups: dict[str, list[str]] = {}
        for name, runtime in tasks.items():
            groups.setdefault(runtime.manifest.backbone, []).append(name)
        # Decode everything first: a bad image fails the request before any model work.
        pixels = {
            backbone_id: await self._preprocess(self.backbones[backbone_id], images)
            for backbone_id in groups
        }
        results: list[dict[str, Summary]] = [{} for _ in images]
        for backbone_id, names in groups.items():
            features = torch.stack(
                await self.backbones[backbone_id].batcher.encode(pixels[backbone_id])
            )
            for name in names:
                summaries = tasks[name].summarize(features, self.interval_level)
                tasks[name].observe(summaries)
                for index, summary in enumerate(summaries):
                    results[index][name] = summary
        return results

    async def _preprocess(
        self, runtime: BackboneRuntime, images: Sequence[NamedImage]
    ) -> list[torch.Tensor]:
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(self._pool, runtime.preprocess_timed, i) for i in images]
        return list(await asyncio.gather(*jobs))

    def stop(self) -> None:
        for runtime in self.backbones.values():
            runtime.batcher.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
