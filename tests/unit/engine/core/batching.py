"""A real (cheap) encoder and the engine's admit-then-encode steps, for the core tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import torch

from service.engine.core.batcher import MicroBatcher
from service.engine.core.runtimes.base import Calibration
from service.engine.pre import Admission

HANG_GUARD_S = 30  # only against a hang; no test asserts a speed


class Boom(BaseException):
    """Not an Exception: the kind of failure that used to kill a worker thread."""


class RecordingEncoder:
    """Returns each image's first pixel doubled, so every output row names its input."""

    def __init__(
        self,
        delay_s: float = 0.0,
        fail_when: Callable[[torch.Tensor], BaseException | None] | None = None,
        rate: float = 1000.0,
    ):
        self.batch_sizes: list[int] = []
        self.threads: list[int | None] = []
        self.lock = threading.Lock()
        self.running = self.most_running = 0
        self.delay_s = delay_s
        self.fail_when = fail_when
        self.rate = rate
        self.release = threading.Event()
        self.release.set()

    def encode(self, pixels: torch.Tensor, intra_op_threads: int | None = None) -> torch.Tensor:
        self.release.wait()
        with self.lock:
            self.batch_sizes.append(len(pixels))
            self.threads.append(intra_op_threads)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        time.sleep(self.delay_s)
        with self.lock:
            self.running -= 1
        if self.fail_when is not None and (error := self.fail_when(pixels)) is not None:
            raise error
        return pixels.flatten(1)[:, :1] * 2

    def calibrate_batch_size(
        self, intra_op_threads: int | None = None, workers: int = 1, *, rounds: int = 2
    ) -> Calibration:
        return Calibration(3, self.throughput(3, intra_op_threads, workers))

    def throughput(
        self, batch_size: int, intra_op_threads: int | None = None, workers: int = 1
    ) -> float:
        return self.rate * workers


def marker(value: float) -> torch.Tensor:
    return torch.full((3, 2, 2), value)


def make(encoder: RecordingEncoder, calibrate: bool = True, **kwargs: object) -> MicroBatcher:
    options: dict = {"max_batch_size": 4, "max_batch_delay_s": 0.005, **kwargs}
    admission = Admission(
        target_wait_s=options.pop("target_wait_s", 1e9), max_queued=options.pop("max_queued", 64)
    )
    batcher = MicroBatcher(encoder, name="test", admission=admission, **options)
    if calibrate:
        batcher.calibrate(search_batch_size=False)
    batcher.start()
    return batcher


async def encode(batcher: MicroBatcher, images: list[torch.Tensor]) -> list[torch.Tensor]:
    """What the engine does: admit first, then queue the decoded images."""
    reservation = batcher.admission.reserve(len(images))
    try:
        return await asyncio.wait_for(batcher.encode(images, reservation), HANG_GUARD_S)
    finally:
        reservation.release()
