"""The admit stage with a real batcher: refusals past the target wait and the hard cap,
Retry-After from the measured rate, room given back."""

from __future__ import annotations

import asyncio

import pytest

from service.errors import Overloaded, ShuttingDown, TooManyImages
from tests.unit.engine.core.batching import RecordingEncoder, encode, make, marker


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
