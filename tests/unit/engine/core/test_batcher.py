"""The core stage with a real (cheap) encoder: bounds, delay, routing, cores, faults."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
import torch

from service.engine.core.batcher import MicroBatcher
from service.engine.pre import Admission
from tests.unit.engine.core.batching import Boom, RecordingEncoder, encode, make, marker


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
    assert batcher.admission.pending == 0


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
    assert batcher.admission.throughput == pytest.approx(100.0)  # two workers side by side
    batcher.stop()


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
    assert batcher.admission.pending == 0


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
    assert batcher.admission.pending == 0
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
    assert batcher.admission.pending == 0
    batcher.stop()


def test_admission_learns_the_drain_rate_not_the_forward_rate() -> None:
    """Between forwards the worker routes answers and records metrics, and on a busy machine
    waits for a core: here each batch's observer sleeps 40 ms, so images cannot drain
    faster than 25 per second however fast the forward is. The rate admission uses must
    not claim more (it used to time the forward alone and claim thousands)."""
    pause_s, images = 0.04, 60

    def slow_observer(size: int, seconds: float, waits: list[float]) -> None:
        time.sleep(pause_s)  # sleeps at least this long, on any machine

    encoder = RecordingEncoder(rate=1000.0)  # the calibrated (forward) rate
    batcher = make(encoder, max_batch_size=1, max_batch_delay_s=0.0, on_batch=slow_observer)
    assert batcher.admission.throughput == pytest.approx(1000.0)
    asyncio.run(encode(batcher, [marker(float(i)) for i in range(images)]))
    # The first cycle has no previous forward (it is the forward alone, < 1 ms), and the
    # start-up figure is 1000: after 59 smoothed cycles their weight is 0.8**59 < 2e-6.
    assert batcher.admission.throughput <= 1 / pause_s + 1.5
    batcher.stop()


def test_a_wrong_row_count_fails_the_batch() -> None:
    class Short(RecordingEncoder):
        def encode(self, pixels: torch.Tensor, intra_op_threads: int | None = None):
            return super().encode(pixels, intra_op_threads)[:-1]

    batcher = make(Short(), max_batch_size=2, max_batch_delay_s=0.0)
    with pytest.raises(RuntimeError, match="rows"):
        asyncio.run(encode(batcher, [marker(1.0), marker(2.0)]))
    assert batcher.admission.pending == 0
    batcher.stop()


def test_threads_start_only_when_started() -> None:
    """A batcher built but never started (its sibling's build failed) leaves no thread."""
    before = threading.active_count()
    batcher = MicroBatcher(
        RecordingEncoder(),
        name="idle",
        max_batch_size=1,
        max_batch_delay_s=0.0,
        admission=Admission(target_wait_s=1.0, max_queued=4),
        workers=2,
    )
    assert threading.active_count() == before
    batcher.stop()  # stopping an unstarted batcher is harmless
