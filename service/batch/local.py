"""Local mode: one process, the server's engine, a pipeline that keeps the encoder busy.

Up to ``window`` images are in flight at once: while the encoder runs one batch, the
engine's pre stage decodes the next images in its thread pool, so the encoder never waits
on JPEG decoding. Rows reach OUT a chunk at a time, in input order. The first Ctrl-C or
SIGTERM stops the job cleanly: images not yet answered are withdrawn, every answered one is
written, OUT is closed valid and the process exits 128 + the signal number. A second
signal ends it at once (Parquet parts already sealed stay valid; see sinks).
"""

from __future__ import annotations

import asyncio
import signal
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from tqdm import tqdm

from service.batch.job import BatchJob
from service.batch.rows import Row
from service.batch.scoring import Scorer
from service.batch.sinks import Sink, open_sink
from service.batch.summary import Summary
from service.engine.engine import InferenceEngine
from service.engine.factory import load_engine

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_local(job: BatchJob, paths: Sequence[str], summary: Summary) -> Summary:
    return asyncio.run(_run(job, paths, summary))


async def _run(job: BatchJob, paths: Sequence[str], summary: Summary) -> Summary:
    engine = await asyncio.to_thread(load_engine, job.store, job.engine_config())
    try:
        await score_into_output(engine, job, paths, summary)
    finally:
        await asyncio.to_thread(engine.stop)
    return summary.finish()


async def score_into_output(
    engine: InferenceEngine, job: BatchJob, paths: Sequence[str], summary: Summary
) -> None:
    """Score ``paths`` (less those already in OUT with ``--resume``) on a loaded engine into
    ``job.out``; stops early, OUT still valid, on the first SIGINT/SIGTERM."""
    scorer = Scorer(engine, job.layout())
    sink = open_sink(job.out, scorer.layout, job.resume)
    try:
        done = sink.done_paths() if job.resume else set()
        todo = [path for path in paths if path not in done]
        summary.skipped = len(paths) - len(todo)
        batch = max(r.batcher.max_batch_size for r in engine.backbones.values())
        window = 4 * batch + 2 * job.workers
        summary.begin()
        with _stop_on_signals() as stopped, _progress(job, len(todo)) as bar:
            await _pipeline(scorer, sink, todo, window, summary, stopped, bar.update)
        summary.interrupted_by = stopped.signal_name
    finally:
        sink.close()


async def _pipeline(
    scorer: Scorer,
    sink: Sink,
    todo: Sequence[str],
    window: int,
    summary: Summary,
    stopped: _Stop,
    advance: Callable[[int], object],
) -> None:
    """Score ``todo`` with at most ``window`` images in flight; write each chunk once all
    its images are answered, while the next chunk is already being decoded and encoded."""
    slots = asyncio.Semaphore(window)

    async def one(path: str) -> list[Row]:
        async with slots:
            rows = await scorer.score(path)
        advance(1)
        return rows

    chunks = (todo[start : start + window] for start in range(0, len(todo), window))
    pending: deque[list[asyncio.Task[list[Row]]]] = deque()

    def launch() -> None:
        chunk = next(chunks, None)
        if chunk is not None:
            pending.append([asyncio.create_task(one(path)) for path in chunk])

    def write(tasks: list[asyncio.Task[list[Row]]]) -> None:
        answered = [task.result() for task in tasks if task.done() and not task.cancelled()]
        for rows in answered:
            summary.add(rows)
        sink.write([row for rows in answered for row in rows])

    launch()
    launch()
    stop = asyncio.create_task(stopped.event.wait())
    try:
        while pending:
            head = asyncio.ensure_future(asyncio.wait(pending[0]))
            await asyncio.wait([head, stop], return_when=asyncio.FIRST_COMPLETED)
            if stopped.event.is_set():
                head.cancel()
                break
            write(pending.popleft())
            launch()
    finally:
        stop.cancel()
        for tasks in pending:  # only after a signal (or an error): withdraw what is queued
            for task in tasks:
                task.cancel()
        for tasks in pending:
            await asyncio.wait(tasks)
            write(tasks)


class _Stop:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signal_name: str | None = None


@contextmanager
def _stop_on_signals() -> Iterator[_Stop]:
    """The first SIGINT/SIGTERM sets the stop event; the handlers are then removed, so a
    second signal takes the default action (an immediate end)."""
    stop = _Stop()
    loop = asyncio.get_running_loop()

    def remove() -> None:
        for number in STOP_SIGNALS:
            loop.remove_signal_handler(number)

    def on_signal(number: int) -> None:
        stop.signal_name = signal.Signals(number).name
        stop.event.set()
        remove()

    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, on_signal, number)
    try:
        yield stop
    finally:
        remove()


def _progress(job: BatchJob, total: int) -> tqdm:
    """Images/s and an ETA on stderr (tqdm's own rate and remaining time)."""
    return tqdm(
        total=total, unit="img", desc="scoring", disable=not job.progress, dynamic_ncols=True
    )
