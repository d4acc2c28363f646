"""The micro-batcher with a real (cheap) encoder function: bounds, delay, routing, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
import torch

from service.engine.batcher import MicroBatcher
from service.errors import Overloaded


class RecordingEncoder:
    """Returns each image's first pixel doubled, so every output row names its input."""

    def __init__(
        self, delay_s: float = 0.0, fail_when: Callable[[torch.Tensor], bool] | None = None
    ):
        self.batch_sizes: list[int] = []
        self.threads: list[int | None] = []
        self.lock = threading.Lock()
        self.running = self.most_running = 0
        self.delay_s = delay_s
        self.fail_when = fail_when
        self.release = threading.Event()
        self.release.set()

    def __call__(self, pixels: torch.Tensor, threads: int | None = None) -> torch.Tensor:
        self.release.wait()
        with self.lock:
            self.batch_sizes.append(len(pixels))
            self.threads.append(threads)
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        time.sleep(self.delay_s)
        with self.lock:
            self.running -= 1
        if self.fail_when is not None and self.fail_when(pixels):
            raise RuntimeError("encoder exploded")
        return pixels.flatten(1)[:, :1] * 2


def marker(value: float) -> torch.Tensor:
    return torch.full((3, 2, 2), value)


def make(encoder: RecordingEncoder, **kwargs: float) -> MicroBatcher:
    options = {"max_batch_size": 4, "max_batch_delay_s": 0.005, "max_queued": 64, **kwargs}
    return MicroBatcher(encoder, name="test", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [1, 2])
def test_batches_never_exceed_the_maximum_and_results_route_back(workers: int) -> None:
    encoder = RecordingEncoder(delay_s=0.002)
    batcher = make(encoder, max_batch_size=4, max_queued=1000, workers=workers)

    async def client(index: int) -> None:
        values = [index * 10.0 + k for k in range(index % 3 + 1)]
        rows = await batcher.encode([marker(v) for v in values])
        assert [float(r[0]) for r in rows] == [2 * v for v in values]

    async def run() -> None:
        await asyncio.gather(*(client(i) for i in range(60)))

    asyncio.run(run())
    batcher.stop()
    assert max(encoder.batch_sizes) <= 4
    assert sum(encoder.batch_sizes) == sum(i % 3 + 1 for i in range(60))
    assert max(encoder.batch_sizes) > 1  # concurrent requests were actually batched


def test_a_lone_request_is_not_held_longer_than_the_delay() -> None:
    batcher = make(RecordingEncoder(), max_batch_size=64, max_batch_delay_s=0.05)

    async def run() -> float:
        await batcher.encode([marker(1.0)])  # first call pays for thread start-up
        start = time.perf_counter()
        await batcher.encode([marker(2.0)])
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    batcher.stop()
    assert elapsed < 0.05 + 0.04  # the delay plus scheduling slack, never "until full"


def test_zero_delay_does_not_wait_for_company() -> None:
    encoder = RecordingEncoder()
    batcher = make(encoder, max_batch_size=64, max_batch_delay_s=0.0)
    asyncio.run(batcher.encode([marker(1.0)]))
    batcher.stop()
    assert encoder.batch_sizes == [1]


def test_a_failing_batch_fails_only_its_own_requests() -> None:
    encoder = RecordingEncoder(fail_when=lambda pixels: bool((pixels == 666).any()))
    batcher = make(encoder, max_batch_size=1, max_batch_delay_s=0.0)

    async def run() -> list[object]:
        return await asyncio.gather(
            batcher.encode([marker(1.0)]),
            batcher.encode([marker(666.0)]),
            batcher.encode([marker(3.0)]),
            return_exceptions=True,
        )

    good, bad, also_good = asyncio.run(run())
    assert isinstance(bad, RuntimeError)
    assert float(good[0][0]) == 2.0 and float(also_good[0][0]) == 6.0  # type: ignore[index]
    assert asyncio.run(batcher.encode([marker(4.0)]))[0].item() == 8.0  # worker still alive
    batcher.stop()


def test_full_queue_answers_overloaded_with_retry_after() -> None:
    encoder = RecordingEncoder()
    encoder.release.clear()  # hold the worker so the queue fills
    batcher = make(encoder, max_batch_size=2, max_queued=5)

    async def run() -> None:
        waiting = asyncio.ensure_future(batcher.encode([marker(float(i)) for i in range(4)]))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded) as refused:
            await batcher.encode([marker(9.0), marker(9.0)])  # 4 + 2 > 5: all or none
        assert refused.value.headers["Retry-After"] == "1"
        assert batcher.pending == 4
        fits = asyncio.ensure_future(batcher.encode([marker(5.0)]))  # 4 + 1 <= 5
        encoder.release.set()
        assert len(await waiting) == 4 and len(await fits) == 1

    asyncio.run(run())
    assert batcher.pending == 0
    batcher.stop()


def test_cancelled_requests_are_skipped() -> None:
    encoder = RecordingEncoder()
    encoder.release.clear()
    batcher = make(encoder, max_batch_size=8, max_batch_delay_s=0.0)

    async def run() -> None:
        first = asyncio.ensure_future(batcher.encode([marker(1.0)]))
        await asyncio.sleep(0.02)  # the worker now holds image 1 and waits on `release`
        gone = asyncio.ensure_future(batcher.encode([marker(2.0), marker(3.0)]))
        await asyncio.sleep(0.02)
        gone.cancel()
        stays = asyncio.ensure_future(batcher.encode([marker(4.0)]))
        await asyncio.sleep(0.02)
        encoder.release.set()
        await first
        assert float((await stays)[0][0]) == 8.0

    asyncio.run(run())
    batcher.stop()
    assert sum(encoder.batch_sizes) == 2  # the cancelled client's images were never encoded
    assert batcher.pending == 0


def test_workers_split_the_cores_under_load_and_a_lone_batch_gets_them_all() -> None:
    encoder = RecordingEncoder(delay_s=0.05)
    batcher = make(encoder, max_batch_size=2, max_batch_delay_s=0.0, workers=2, threads=4)

    async def run() -> None:
        await batcher.encode([marker(1.0)])  # alone: all 4 threads
        await asyncio.gather(*(batcher.encode([marker(float(i))]) for i in range(8)))

    asyncio.run(run())
    batcher.stop()
    assert encoder.threads[0] == 4
    assert 2 in encoder.threads[1:]  # under load each worker takes half
    assert encoder.most_running == 2  # and the two workers run side by side
    assert max(encoder.batch_sizes) <= 2
