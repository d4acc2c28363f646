"""The core stage: dynamic micro-batching of admitted images.

A request's decoded images arrive with the reservation it took at admission
(:mod:`service.engine.pre`) and are queued together; worker threads pack them into
batches of at most ``max_batch_size`` (waiting at most ``max_batch_delay`` after the
first), run the encoder off the event loop and route each row back to its request's
future. Whatever goes wrong in a batch fails exactly that batch's futures, and the worker
carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from service.engine.core.runtimes.base import Encoder
from service.engine.pre import Admission, Reservation

log = logging.getLogger(__name__)

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
        encoder: Encoder,
        *,
        name: str,
        max_batch_size: int,
        max_batch_delay_s: float,
        admission: Admission,
        workers: int = 1,
        cores: int | None = None,
        calibration_rounds: int = 2,
        on_batch: BatchObserver | None = None,
    ) -> None:
        """``workers``: forward-pass threads. ``cores``: the CPU cores they share (None:
        leave threads to the runtime, as on CUDA). Under load each worker uses
        ``cores // workers`` intra-op threads and they run side by side; a worker alone
        with an empty queue uses every core, so a lone request is as fast as one forward
        can be. The cores are a budget: a worker waits rather than start a forward whose
        threads would exceed it, since oversubscribed OpenMP teams stall at every barrier
        (a 2-core machine served half its limit that way). ``admission``: the
        encoder's ledger, settled after every batch and fed the throughput seen."""
        self.name = name
        self._encoder = encoder
        self._calibration_rounds = calibration_rounds
        self._max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self.admission = admission
        self._on_batch = on_batch
        self._cores = cores
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._lock = threading.Lock()
        self._busy_workers = 0
        self._cores_busy = 0  # intra-op threads of the forwards running now
        self._cores_freed = threading.Condition(self._lock)
        self._workers = [
            threading.Thread(target=self._run, name=f"batcher-{name}-{i}", daemon=True)
            for i in range(workers)
        ]

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker threads (apart from construction, so that a failed build of a
        sibling backbone leaves no thread behind)."""
        for worker in self._workers:
            worker.start()

    def calibrate(self, search_batch_size: bool) -> None:
        """Measure the throughput admission starts from; with ``search_batch_size``, first
        pick the batch size with the best throughput."""
        threads, workers = self._threads_under_load(), len(self._workers)
        if search_batch_size:
            calibration = self._encoder.calibrate_batch_size(
                threads, workers, rounds=self._calibration_rounds
            )
            self._max_batch_size = calibration.batch_size
            self.admission.measured(calibration.img_s)
        else:
            self.admission.measured(
                self._encoder.throughput(self._max_batch_size, threads, workers)
            )

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the workers. Blocks: call it off the event loop."""
        self.admission.close()
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            if worker.is_alive():
                worker.join(timeout)

    # -- figures -------------------------------------------------------------------------
    @property
    def max_batch_size(self) -> int:
        return self._max_batch_size

    @property
    def workers(self) -> int:
        return len(self._workers)

    async def encode(
        self, images: list[torch.Tensor], reservation: Reservation
    ) -> list[torch.Tensor]:
        """Queue a request's admitted images together and await their features. The
        reservation is resized to the rows first (faces may give more or fewer than the
        images admitted: growing is admitted as a new request would be)."""
        reservation.queued(len(images))
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

    # -- worker threads ------------------------------------------------------------------
    def _run(self) -> None:
        free_since = 0.0  # when this worker's previous forward ended
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop_after = self._fill_batch(first)
            outcomes: list[tuple[_Item, torch.Tensor | BaseException]]
            try:
                outcomes, free_since = self._process(batch, free_since)
            except BaseException as exc:  # a worker must outlive any batch
                log.exception("batch of %d failed on %s", len(batch), self.name)
                outcomes, free_since = [(item, exc) for item in batch], time.perf_counter()
            self.admission.settle(len(batch))  # before any client hears back
            for item, outcome in outcomes:
                _settle(item, outcome)
            if stop_after:
                return

    def _fill_batch(self, first: _Item) -> tuple[list[_Item], bool]:
        batch = [first]
        deadline = first.enqueued + self.max_batch_delay_s
        while len(batch) < self._max_batch_size:
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

    def _process(
        self, batch: list[_Item], free_since: float
    ) -> tuple[list[tuple[_Item, torch.Tensor | BaseException]], float]:
        """Encode the batch's live items; returns each with its row, and when the forward
        ended. The throughput admission learns is the drain rate in wall-clock time: from
        the end of this worker's previous forward (or the first item's arrival, if later)
        to the end of this one. It counts what the forward alone does not: routing the last
        answers, metrics, waiting for the cores, the GIL or a slot beside the decoding
        threads (on one core the forward's own rate overstated the drain rate, and admitted
        images waited past the target)."""
        live = [item for item in batch if not item.future.cancelled()]
        if not live:
            return [], free_since
        cycle_start = max(free_since, min(item.enqueued for item in live))
        started = time.perf_counter()
        waits = [started - item.enqueued for item in live]
        with self._worker_slot() as (threads, sharing):
            features = self._encoder.encode(torch.stack([item.pixels for item in live]), threads)
        finished = time.perf_counter()
        seconds = finished - started
        if len(features) != len(live):
            raise RuntimeError(f"encoder returned {len(features)} rows for {len(live)} images")
        self.admission.observe(len(live) / max(finished - cycle_start, 1e-9) * sharing)
        if self._on_batch is not None:
            self._on_batch(len(live), seconds, waits)
        return list(zip(live, features, strict=True)), finished

    def _threads_under_load(self) -> int | None:
        return None if self._cores is None else max(1, self._cores // len(self._workers))

    @contextmanager
    def _worker_slot(self) -> Iterator[tuple[int | None, int]]:
        """(intra-op threads for this batch, workers that share the cores meanwhile), held
        within the core budget."""
        with self._cores_freed:
            while True:
                alone = self._busy_workers == 0 and self._queue.empty()
                threads = self._cores if alone else self._threads_under_load()
                if threads is None or self._cores is None:
                    break
                if self._cores_busy + threads <= self._cores:
                    break
                self._cores_freed.wait()
            self._busy_workers += 1
            self._cores_busy += threads or 0
        try:
            yield threads, (1 if alone else len(self._workers))
        finally:
            with self._cores_freed:
                self._busy_workers -= 1
                self._cores_busy -= threads or 0
                self._cores_freed.notify_all()


def _settle(item: _Item, outcome: torch.Tensor | BaseException) -> None:
    """Complete a future from a worker thread; a closed loop (client gone) is ignored."""

    def apply() -> None:
        if item.future.done():
            return
        if isinstance(outcome, BaseException):
            item.future.set_exception(outcome)
        else:
            item.future.set_result(outcome)

    with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody waits
        item.loop.call_soon_threadsafe(apply)
