"""Batch-size calibration measures the layout the batcher serves in: every worker encoding
at once. The encoder here is the real :class:`MeasuredEncoder` machinery around an
``encode`` that sleeps (sleeping threads overlap on any machine, so no figure depends on
this machine's speed) and records how many calls ran at once."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from service.engine.core.batcher import MicroBatcher
from service.engine.core.device import Placement
from service.engine.core.runtimes.base import MeasuredEncoder, RuntimeInfo
from service.engine.engine_config import EngineConfig
from service.engine.pre import Admission

# Seconds one batch takes: size 4 is twice as fast per image as sizes 1, 2 and 8 (and 16,
# whose round is over the default budget of 0.5 s).
BATCH_SECONDS = {1: 0.02, 2: 0.04, 4: 0.04, 8: 0.16, 16: 0.64}


class SleepingEncoder(MeasuredEncoder):
    backbone_id = "sleeper"
    image_size = 2
    placement = Placement(torch.device("cpu"), "fp32")
    runtime_info = RuntimeInfo("torch", "fp32")

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.lock = threading.Lock()
        self.running = 0
        self.most_running = 0
        self.sizes: list[int] = []

    def encode(self, pixels: torch.Tensor, intra_op_threads: int | None = None) -> torch.Tensor:
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.sizes.append(len(pixels))
        time.sleep(BATCH_SECONDS[len(pixels)])
        if len(pixels) == self.fail_at:
            raise RuntimeError("out of memory at this size")
        with self.lock:
            self.running -= 1
        return torch.ones(len(pixels), 4)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_calibration_runs_every_worker_at_once_and_picks_the_fastest_size(workers: int) -> None:
    encoder = SleepingEncoder()
    calibration = encoder.calibrate_batch_size(1, workers, limit=8)
    assert calibration.batch_size == 4
    assert encoder.most_running == workers
    # one untimed pass, then two timed rounds over the same sizes, each size run by all
    assert sorted(set(encoder.sizes)) == [1, 2, 4, 8]
    assert all(encoder.sizes.count(size) == 3 * workers for size in (1, 2, 4, 8))
    # the rate is what all workers do together (sleeps overlap: well over one worker's)
    one_worker = 4 / BATCH_SECONDS[4]
    assert workers * one_worker / 2 < calibration.img_s <= workers * one_worker * 1.01


def test_doubling_stops_at_the_first_round_over_the_budget() -> None:
    encoder = SleepingEncoder()
    calibration = encoder.calibrate_batch_size(1, workers=2, limit=64, budget_s=0.1)
    assert sorted(set(encoder.sizes)) == [1, 2, 4, 8]  # size 8's round took 0.16 s > 0.1 s
    assert calibration.batch_size == 4


def test_throughput_counts_every_worker() -> None:
    encoder = SleepingEncoder()
    rate = encoder.throughput(2, 1, workers=2, repeats=2)
    assert encoder.most_running == 2
    assert 2 * 2 / BATCH_SECONDS[2] / 2 < rate <= 2 * 2 / BATCH_SECONDS[2] * 1.01


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_forward_fails_the_calibration(workers: int) -> None:
    with pytest.raises(RuntimeError, match="out of memory"):
        SleepingEncoder(fail_at=4).calibrate_batch_size(1, workers, limit=8)


def test_more_rounds_time_every_size_more_often() -> None:
    """A batch job calibrates with more rounds than a server (a surer choice on a noisy
    machine, paid once per job): each round visits every size once more."""
    encoder = SleepingEncoder()
    calibration = encoder.calibrate_batch_size(1, workers=1, limit=8, rounds=5)
    assert calibration.batch_size == 4
    assert all(encoder.sizes.count(size) == 1 + 5 for size in (1, 2, 4, 8))


def test_the_batcher_calibrates_with_its_configured_rounds() -> None:
    encoder = SleepingEncoder()
    batcher = MicroBatcher(
        encoder,
        name="sleeper",
        max_batch_size=1,
        max_batch_delay_s=0.001,
        admission=Admission(target_wait_s=1.0, max_queued=8),
        calibration_rounds=3,
    )
    batcher.calibrate(search_batch_size=True)
    assert batcher.max_batch_size == 4
    assert encoder.sizes.count(1) == 1 + 3  # the untimed pass, then three timed rounds
    assert EngineConfig.offline().calibration_rounds > EngineConfig().calibration_rounds
