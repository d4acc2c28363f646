"""The core stage with a real (cheap) encoder: admission, bounds, delay, routing, faults."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
import torch

from service.engine.batcher import MicroBatcher
from service.engine.runtimes.base import Calibration
from service.errors import Overloaded, ShuttingDown, TooManyImages

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
    options: dict = {
        "max_batch_size": 4,
        "max_batch_delay_s": 0.005,
        "max_queued": 64,
        "target_wait_s": 1e9,
        **kwargs,
    }
    batcher = MicroBatcher(encoder, name="test", **options)
    if calibrate:
        batcher.calibrate(search_batch_size=False)
    batcher.start()
    return batcher


async def encode(batcher: MicroBatcher, images: list[torch.Tensor]) -> list[torch.Tensor]:
    """What the engine does: admit first, then queue the decoded images."""
    reservation = batcher.reserve(len(images))
    try:
        return await asyncio.wait_for(batcher.encode(images, reservation), HANG_GUARD_S)
    finally:
        reservation.release()


@pytest.mark.parametrize("workers", [1, 2])
def test_batches_never_exceed_the_maximum_and_results_route_back(workers: int) -> None:
    encoder = RecordingEncoder(delay_s=0.002)
    batcher = make(encoder, max_batch_size=4, max_queued=1000, workers=workers)

    async def client(index: int) -> None:
        values = [index * 10.0 + k for k in range(index % 3 + 1)]
        rows = await encode(batcher, [marker(v) for v in values])
        assert [float(r[0]) for r in rows] == [2 * v for v in values]

    async def run() -> None:
        await asyncio.gather(*(client(i) for i in range(60)))

    asyncio.run(run())
    batcher.stop()
    assert max(encoder.batch_sizes) <= 4
    assert sum(encoder.batch_sizes) == sum(i % 3 + 1 for i in range(60))
    assert max(encoder.batch_sizes) > 1  # concurrent requests were actually batched
    assert batcher.pending == 0


def test_a_lone_request_is_not_held_until_the_batch_is_full() -> None:
    encoder = RecordingEncoder()
    batcher = make(encoder, max_batch_size=64, max_batch_delay_s=0.01)
    asyncio.run(encode(batcher, [marker(1.0)]))
    asyncio.run(encode(batcher, [marker(2.0)]))
    batcher.stop()
    assert encoder.batch_sizes == [1, 1]  # each went alone once the delay passed


def test_calibration_sets_the_batch_size_through_the_batcher_itself() -> None:
    batcher = make(RecordingEncoder(rate=50.0), calibrate=False, workers=2)
    batcher.calibrate(search_batch_size=True)
    assert batcher.max_batch_size == 3  # what the encoder measured best
    assert batcher.throughput == pytest.approx(100.0)  # two workers side by side
    batcher.stop()


def test_admission_refuses_work_past_the_target_wait_with_the_drain_time() -> None:
    """At 10 img/s and a 1 s target, 8 images ahead leave room for 2 more, not 4."""
    encoder = RecordingEncoder(rate=10.0)
    encoder.release.clear()  # hold the worker so the queue stays put
    batcher = make(encoder, max_batch_size=1, target_wait_s=1.0, max_queued=1000)

    async def run() -> None:
        ahead = asyncio.ensure_future(encode(batcher, [marker(float(i)) for i in range(8)]))
        await asyncio.sleep(0.05)
        assert batcher.pending == 8
        assert batcher.expected_wait_s == pytest.approx(0.8)
        with pytest.raises(Overloaded) as refused:
            batcher.reserve(4)  # (8 + 4) / 10 = 1.2 s > 1 s
        assert refused.value.headers["Retry-After"] == "1"  # ceil(8 / 10)
        assert batcher.pending == 8  # a refusal reserves nothing
        fits = asyncio.ensure_future(encode(batcher, [marker(1.0), marker(2.0)]))  # 1.0 s
        await asyncio.sleep(0.01)
        encoder.release.set()
        assert len(await ahead) == 8 and len(await fits) == 2

    asyncio.run(run())
    assert batcher.pending == 0
    batcher.stop()


def test_retry_after_follows_the_measured_rate() -> None:
    encoder = RecordingEncoder(rate=2.0)
    encoder.release.clear()
    batcher = make(encoder, max_batch_size=1, target_wait_s=1.0)
    first = batcher.reserve(7)  # idle: always admitted, however slow the machine
    with pytest.raises(Overloaded) as refused:
        batcher.reserve(1)
    assert refused.value.headers["Retry-After"] == "4"  # ceil(7 / 2)
    first.release()
    assert batcher.pending == 0
    encoder.release.set()
    batcher.stop()


def test_hard_cap_on_admitted_images() -> None:
    encoder = RecordingEncoder(rate=1e9)
    batcher = make(encoder, max_queued=5)
    held = batcher.reserve(4)
    with pytest.raises(Overloaded):
        batcher.reserve(2)  # 4 + 2 > 5 although the wait would be tiny
    with pytest.raises(TooManyImages):
        batcher.reserve(6)  # can never fit
    batcher.reserve(1).release()
    held.release()
    assert batcher.pending == 0
    batcher.stop()
    with pytest.raises(ShuttingDown):
        batcher.reserve(1)


def test_cancelled_requests_are_skipped() -> None:
    encoder = RecordingEncoder()
    encoder.release.clear()
    batcher = make(encoder, max_batch_size=8, max_batch_delay_s=0.0)

    async def run() -> None:
        first = asyncio.ensure_future(encode(batcher, [marker(1.0)]))
        await asyncio.sleep(0.02)  # the worker now holds image 1 and waits on `release`
        gone = asyncio.ensure_future(encode(batcher, [marker(2.0), marker(3.0)]))
        await asyncio.sleep(0.02)
        gone.cancel()
        stays = asyncio.ensure_future(encode(batcher, [marker(4.0)]))
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
    batcher = make(encoder, max_batch_size=2, max_batch_delay_s=0.0, workers=2, cores=4)

    async def run() -> None:
        await encode(batcher, [marker(1.0)])  # alone: all 4 cores
        await asyncio.gather(*(encode(batcher, [marker(float(i))]) for i in range(8)))

    asyncio.run(run())
    batcher.stop()
    assert encoder.threads[0] == 4
    assert 2 in encoder.threads[1:]  # under load each worker takes half
    assert encoder.most_running == 2  # and the two workers run side by side
    assert max(encoder.batch_sizes) <= 2


class ThreadCountingEncoder(RecordingEncoder):
    """Records the intra-op threads of every forward running at once."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s=delay_s)
        self.threads_now = self.most_threads = 0

    def encode(self, pixels: torch.Tensor, intra_op_threads: int | None = None) -> torch.Tensor:
        with self.lock:
            self.threads_now += intra_op_threads or 0
            self.most_threads = max(self.most_threads, self.threads_now)
        try:
            return super().encode(pixels, intra_op_threads)
        finally:
            with self.lock:
                self.threads_now -= intra_op_threads or 0


def test_forwards_never_run_more_threads_than_cores() -> None:
    """A lone batch takes every core; a second worker that wakes meanwhile waits for them
    instead of starting a forward beside it (oversubscribed OpenMP teams stall)."""
    encoder = ThreadCountingEncoder(delay_s=0.03)
    batcher = make(encoder, max_batch_size=1, max_batch_delay_s=0.0, workers=2, cores=2)

    async def trickle() -> None:
        for round_ in range(6):  # each wave begins with one request alone, then company
            first = asyncio.ensure_future(encode(batcher, [marker(float(round_))]))
            await asyncio.sleep(0.005)
            await asyncio.gather(first, *(encode(batcher, [marker(1.0)]) for _ in range(3)))

    asyncio.run(trickle())
    batcher.stop()
    assert 2 in encoder.threads  # a lone batch got both cores
    assert 1 in encoder.threads  # under load each worker took one
    assert encoder.most_threads <= 2
    assert encoder.most_running == 2  # the two workers still ran side by side


FAULTS: dict[str, Callable[[torch.Tensor], BaseException | None]] = {
    "exception": lambda pixels: RuntimeError("encoder exploded"),
    "base_exception": lambda pixels: Boom("worker-killing failure"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_failing_batch_fails_only_its_own_requests_and_the_worker_lives(fault: str) -> None:
    def fail_on_666(pixels: torch.Tensor) -> BaseException | None:
        return FAULTS[fault](pixels) if bool((pixels == 666).any()) else None

    encoder = RecordingEncoder(fail_when=fail_on_666)
    batcher = make(encoder, max_batch_size=1, max_batch_delay_s=0.0)

    async def run() -> list[object]:
        return await asyncio.gather(
            encode(batcher, [marker(1.0)]),
            encode(batcher, [marker(666.0)]),
            encode(batcher, [marker(3.0)]),
            return_exceptions=True,
        )

    good, bad, also_good = asyncio.run(run())
    assert isinstance(bad, BaseException) and not isinstance(bad, asyncio.TimeoutError)
    assert float(good[0][0]) == 2.0 and float(also_good[0][0]) == 6.0  # type: ignore[index]
    assert asyncio.run(encode(batcher, [marker(4.0)]))[0].item() == 8.0  # worker still alive
    assert batcher.pending == 0
    batcher.stop()


def test_a_failing_metrics_observer_fails_the_batch_not_the_worker() -> None:
    """It used to run outside the worker's try: the thread died, futures hung, and
    ``pending`` leaked until every request got 429."""
    calls = []

    def observer(size: int, seconds: float, waits: list[float]) -> None:
        calls.append(size)
        if len(calls) == 1:
            raise RuntimeError("metrics backend broke")

    batcher = make(RecordingEncoder(), max_batch_size=1, max_batch_delay_s=0.0, on_batch=observer)
    with pytest.raises(RuntimeError, match="metrics backend broke"):
        asyncio.run(encode(batcher, [marker(1.0)]))
    assert asyncio.run(encode(batcher, [marker(2.0)]))[0].item() == 4.0
    assert batcher.pending == 0
    batcher.stop()


def test_a_wrong_row_count_fails_the_batch() -> None:
    class Short(RecordingEncoder):
        def encode(self, pixels: torch.Tensor, intra_op_threads: int | None = None):
            return super().encode(pixels, intra_op_threads)[:-1]

    batcher = make(Short(), max_batch_size=2, max_batch_delay_s=0.0)
    with pytest.raises(RuntimeError, match="rows"):
        asyncio.run(encode(batcher, [marker(1.0), marker(2.0)]))
    assert batcher.pending == 0
    batcher.stop()


def test_threads_start_only_when_started() -> None:
    """A batcher built but never started (its sibling's build failed) leaves no thread."""
    before = threading.active_count()
    batcher = MicroBatcher(
        RecordingEncoder(),
        name="idle",
        max_batch_size=1,
        max_batch_delay_s=0.0,
        target_wait_s=1.0,
        max_queued=4,
        workers=2,
    )
    assert threading.active_count() == before
    batcher.stop()  # stopping an unstarted batcher is harmless
