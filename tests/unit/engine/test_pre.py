"""The pre stage: order, and a request's first bad image stops its other work."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.engine.pre import PreStage
from service.errors import InvalidImage


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
