"""The pre stage: decoding, checks and transforms of a request's images in a thread pool.

Its queue is bounded by admission: a request reserves encoder room for its images before
it is decoded (see :mod:`service.engine.batcher`), so at most the admitted images wait
here. The first image that fails stops its request's other jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class PreStage:
    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="preprocess")

    async def map(self, job: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``job`` over ``items`` in the pool, in order. On the first failure the jobs not
        yet started are cancelled and the error of the earliest failed item is raised."""
        loop = asyncio.get_running_loop()
        futures = [loop.run_in_executor(self._pool, job, item) for item in items]
        try:
            await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for future in futures:
                future.cancel()  # no-op for finished ones; unstarted jobs never run
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        return [future.result() for future in futures]

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
