"""``--ray [ADDRESS]``: the same job on Ray Data.

``from_items`` of the paths -> ``map_batches`` with :class:`ScoringActor`, a callable class
that builds the server's engine once per actor, in a fixed pool of ``--workers`` actors
(one GPU each where CUDA is present, else one CPU) -> ``write_parquet`` into the OUT folder
(JSONL and CSV stream back to this process and go through the local sinks). Files are
read by the actors, so a missing or unreadable file is an error row, as in local mode.

With no address a local Ray is started here; with one, the job runs on that cluster. The
model store reaches the actors as a path every node can read (a shared mount), or, with
``--pack-store``, packed into the job through Ray's object store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import tarfile
import tempfile
from itertools import groupby
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from service.batch.job import BatchJob
from service.batch.rows import Layout, Row, to_table
from service.batch.scoring import Scorer
from service.batch.sinks import ParquetSink, Sink, open_sink
from service.batch.summary import Summary
from service.engine.factory import load_engine

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds `service`


class ScoringActor:
    """One engine per actor, built once; each call scores one batch of paths."""

    def __init__(self, job: BatchJob, layout: Layout, packed: list[Any], cpu_cores: int) -> None:
        store = job.store
        if packed:  # the registry shipped in the job: unpack it beside this actor
            self._unpacked = tempfile.TemporaryDirectory(prefix="oclip-store-")
            with tarfile.open(fileobj=io.BytesIO(ray.get(packed[0]))) as archive:
                archive.extractall(self._unpacked.name, filter="data")
            store = Path(self._unpacked.name)
        self._loop = asyncio.new_event_loop()
        self._scorer = Scorer(load_engine(store, job.engine_config(cpu_cores)), layout)

    def __call__(self, batch: pa.Table) -> pa.Table:
        paths = batch.column("path").to_pylist()
        files = batch.column("file").to_pylist()
        rows = self._loop.run_until_complete(self._scorer.score_all(paths, files))
        return to_table(self._scorer.layout, rows)


def pack_store(store: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(store, arcname=".")
    return buffer.getvalue()


def run_ray(
    job: BatchJob,
    paths: list[str],
    summary: Summary,
    address: str | None,
    pack: bool,
) -> Summary:
    layout = job.layout()
    sink = open_sink(job.out, layout, job.resume)
    try:
        done = sink.done_paths() if job.resume else set()
        todo = [path for path in paths if path not in done]
        summary.skipped = len(paths) - len(todo)
        if todo:
            _start_ray(address, job)
            try:
                _score(job, layout, todo, pack, sink, summary)
            finally:
                ray.shutdown()
    finally:
        sink.close()
    return summary.finish()


def _score(
    job: BatchJob, layout: Layout, todo: list[str], pack: bool, sink: Sink, summary: Summary
) -> None:
    gpus = 1 if job.device != "cpu" and torch.cuda.is_available() else 0
    actor_job = dataclasses.replace(job, store=job.store.resolve(), out=job.out.resolve())
    dataset = ray.data.from_items(
        [{"path": path, "file": str(Path(path).resolve())} for path in todo]
    ).map_batches(
        ScoringActor,
        fn_constructor_kwargs={
            "job": actor_job,
            "layout": layout,
            "packed": [ray.put(pack_store(job.store))] if pack else [],
            "cpu_cores": 0 if gpus else 1,
        },
        batch_size=max(job.batch_size, 32),
        batch_format="pyarrow",
        concurrency=job.workers,
        num_gpus=gpus,
        num_cpus=1,
    )
    if isinstance(sink, ParquetSink):  # the actors' blocks go straight to part files
        dataset.write_parquet(str(actor_job.out))
        written = pq.read_table(sink.parts(), columns=["path", "error"]).to_pylist()
        wanted = set(todo)
        _count([row for row in written if row["path"] in wanted], summary)
        return
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows = batch.to_pylist()
        sink.write(rows)
        _count(rows, summary)


def _start_ray(address: str | None, job: BatchJob) -> None:
    if address is not None:
        ray.init(address=address, log_to_driver=False)
        return
    # A local Ray: its workers import this checkout's `service` package.
    ray.init(
        num_cpus=job.workers + 1,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(PACKAGE_ROOT)}},
    )
    ray.data.DataContext.get_current().enable_progress_bars = job.progress


def _count(rows: list[Row], summary: Summary) -> None:
    for _, image in groupby(rows, key=lambda row: row["path"]):
        summary.add(list(image))
