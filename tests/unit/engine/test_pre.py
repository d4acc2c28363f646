"""The pre stage: admission with a real batcher (refusals past the target wait and the hard
cap, Retry-After from the measured rate, room given back); the pool's order, and a request's
first bad image stops its other work."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.engine.pre import PreStage
from service.errors import InvalidImage, Overloaded, ShuttingDown, TooManyImages
from tests.unit.engine.core.batching import RecordingEncoder, encode, make, marker


def test_results_come_back_in_order() -> None:
    stage = PreStage(workers=2)
    assert asyncio.run(stage.map(lambda x: x * x, list(range(10)))) == [x * x for x in range(10)]
    stage.stop()


def test_the_first_failure_cancels_the_jobs_not_yet_started() -> None:
    """One worker, ten jobs, the first fails: the other nine must not all run (they used
    to keep decoding in the pool after the client had its 422)."""
    stage = PreStage(workers=1)
    ran: list[int] = []
    lock = threading.Lock()

    def job(index: int) -> int:
        with lock:
            ran.append(index)
        if index == 0:
            raise InvalidImage("image 0 is corrupt")
        time.sleep(0.2)
        return index

    with pytest.raises(InvalidImage, match="image 0"):
        asyncio.run(stage.map(job, list(range(10))))
    time.sleep(0.5)  # let any job that was already running finish
    stage.stop()
    assert ran[0] == 0
    assert len(ran) <= 3, ran  # at most the ones already picked up before the cancel


def test_admission_refuses_work_past_the_target_wait_with_the_drain_time() -> None:
    """At 10 img/s and a 1 s target, 8 images ahead leave room for 2 more, not 4."""
    encoder = RecordingEncoder(rate=10.0)
    encoder.release.clear()  # hold the worker so the queue stays put
    batcher = make(encoder, max_batch_size=1, target_wait_s=1.0, max_queued=1000)

    async def run() -> None:
        ahead = asyncio.ensure_future(encode(batcher, [marker(float(i)) for i in range(8)]))
        await asyncio.sleep(0.05)
        assert batcher.admission.pending == 8
        assert batcher.admission.expected_wait_s == pytest.approx(0.8)
        with pytest.raises(Overloaded) as refused:
            batcher.admission.reserve(4)  # (8 + 4) / 10 = 1.2 s > 1 s
        assert refused.value.headers["Retry-After"] == "1"  # ceil(8 / 10)
        assert batcher.admission.pending == 8  # a refusal reserves nothing
        fits = asyncio.ensure_future(encode(batcher, [marker(1.0), marker(2.0)]))  # 1.0 s
        await asyncio.sleep(0.01)
        encoder.release.set()
        assert len(await ahead) == 8 and len(await fits) == 2

    asyncio.run(run())
    assert batcher.admission.pending == 0
    batcher.stop()


def test_retry_after_follows_the_measured_rate() -> None:
    encoder = RecordingEncoder(rate=2.0)
    encoder.release.clear()
    batcher = make(encoder, max_batch_size=1, target_wait_s=1.0)
    first = batcher.admission.reserve(7)  # idle: always admitted, however slow the machine
    with pytest.raises(Overloaded) as refused:
        batcher.admission.reserve(1)
    assert refused.value.headers["Retry-After"] == "4"  # ceil(7 / 2)
    first.release()
    assert batcher.admission.pending == 0
    encoder.release.set()
    batcher.stop()


def test_hard_cap_on_admitted_images() -> None:
    encoder = RecordingEncoder(rate=1e9)
    batcher = make(encoder, max_queued=5)
    held = batcher.admission.reserve(4)
    with pytest.raises(Overloaded):
        batcher.admission.reserve(2)  # 4 + 2 > 5 although the wait would be tiny
    with pytest.raises(TooManyImages):
        batcher.admission.reserve(6)  # can never fit
    batcher.admission.reserve(1).release()
    held.release()
    assert batcher.admission.pending == 0
    batcher.stop()
    with pytest.raises(ShuttingDown):
        batcher.admission.reserve(1)
