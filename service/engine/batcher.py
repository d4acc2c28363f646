"""Dynamic micro-batching: images from concurrent requests share forward passes.

Worker threads (one by default; on a multi-core CPU, several with fewer intra-op threads
each) take queued images, form batches of at most ``max_batch_size`` (waiting at most
``max_batch_delay`` after the first image arrived), run the encoder off the event loop and
route each row back to its request's future. A failing batch fails exactly its own
futures; a full queue refuses new work at once.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from service.errors import Overloaded, ShuttingDown, TooManyImages

log = logging.getLogger(__name__)

Encode = Callable[[torch.Tensor, int | None], torch.Tensor]  # (pixels, intra-op threads)
BatchObserver = Callable[[int, float, list[float]], None]  # size, seconds, queue waits


@dataclass
class _Item:
    pixels: torch.Tensor
    future: asyncio.Future[torch.Tensor]
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    def __init__(
        self,
        encode: Encode,
        *,
        name: str,
        max_batch_size: int,
        max_batch_delay_s: float,
        max_queued: int,
        on_batch: BatchObserver | None = None,
        workers: int = 1,
        threads: int | None = None,
    ) -> None:
        """``threads``: the cores the workers share (None: leave torch's setting alone). A
        worker alone with an empty queue uses them all, so a lone request is as fast as one
        forward can be; under load each uses ``threads // workers`` and the workers run
        side by side, which on a CPU beats one worker with every core (no barrier stalls)."""
        self.name = name
        self._encode = encode
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self.max_queued = max_queued
        self._on_batch = on_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._pending = 0  # queued + running images
        self._pending_lock = threading.Lock()
        self._stopped = False
        self._threads_total = threads
        self._busy_workers = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"batcher-{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    async def encode(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """Queue a request's images together (all or none) and await their features."""
        if self._stopped:
            raise ShuttingDown("the service is shutting down")
        if len(images) > self.max_queued:
            raise TooManyImages(
                f"{len(images)} images can never fit the encoder queue of {self.max_queued}"
            )
        with self._pending_lock:
            if self._pending + len(images) > self.max_queued:
                raise Overloaded(
                    f"{self._pending} images are already waiting for the encoder "
                    f"(limit {self.max_queued}); retry shortly",
                    headers={"Retry-After": "1"},
                )
            self._pending += len(images)
        loop = asyncio.get_running_loop()
        items = [_Item(pixels, loop.create_future(), loop) for pixels in images]
        for item in items:
            self._queue.put(item)
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        except BaseException:
            for item in items:
                item.future.cancel()  # the worker skips cancelled items
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the worker threads."""
        self._stopped = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    # -- worker thread -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop_after = self._fill_batch(first)
            self._process(batch)
            if stop_after:
                return

    def _fill_batch(self, first: _Item) -> tuple[list[_Item], bool]:
        batch = [first]
        deadline = first.enqueued + self.max_batch_delay_s
        while len(batch) < self.max_batch_size:
            timeout = deadline - time.perf_counter()
            try:
                item = (
                    self._queue.get_nowait() if timeout <= 0 else self._queue.get(timeout=timeout)
                )
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _worker_slot(self) -> _Slot:
        return _Slot(self)

    def _process(self, batch: list[_Item]) -> None:
        live = [item for item in batch if not item.future.cancelled()]
        try:
            if not live:
                return
            started = time.perf_counter()
            waits = [started - item.enqueued for item in live]
            try:
                with self._worker_slot() as threads:
                    features = self._encode(torch.stack([item.pixels for item in live]), threads)
                if len(features) != len(live):
                    raise RuntimeError(f"encoder returned {len(features)} rows for {len(live)}")
            except Exception as exc:  # the batch's requests fail; the worker lives on
                log.exception("batch of %d failed on %s", len(live), self.name)
                for item in live:
                    item.loop.call_soon_threadsafe(_set_exception, item.future, exc)
                return
            if self._on_batch is not None:
                self._on_batch(len(live), time.perf_counter() - started, waits)
            for item, row in zip(live, features, strict=True):
                item.loop.call_soon_threadsafe(_set_result, item.future, row)
        finally:
            with self._pending_lock:
                self._pending -= len(batch)


class _Slot:
    """Counts busy workers and picks the intra-op threads for the batch about to run."""

    def __init__(self, batcher: MicroBatcher) -> None:
        self.batcher = batcher

    def __enter__(self) -> int | None:
        batcher = self.batcher
        with batcher._pending_lock:
            batcher._busy_workers += 1
            alone = batcher._busy_workers == 1 and batcher._queue.empty()
        total = batcher._threads_total
        if total is None:
            return None
        return total if alone else max(1, total // len(batcher._threads))

    def __exit__(self, *_: object) -> None:
        with self.batcher._pending_lock:
            self.batcher._busy_workers -= 1


def _set_result(future: asyncio.Future[torch.Tensor], value: torch.Tensor) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[torch.Tensor], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
