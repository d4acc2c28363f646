"""Local-mode batch scoring throughput (``python -m service.batch``), for the bench report.

Two figures per image size, on a folder of identical images (every copy costs the same):

- **end to end**: the real CLI in its own process; its summary gives the scoring rate and
  the start-up time;
- **against the in-process limit, interleaved**: this machine's speed drifts by a third
  within seconds (other tenants), so a limit measured before and after a run says little.
  Instead, segments of local mode's own scoring code
  (:func:`service.batch.local.score_into_output`, on an engine built from the CLI's own
  :meth:`~service.batch.job.BatchJob.engine_config`, writing real Parquet) alternate with
  equally long spells of the limit, and the ratio is taken of the totals.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from bench.limit import Layout, sustained_rate
from service.batch.job import BatchJob
from service.batch.local import score_into_output
from service.batch.summary import Summary
from service.engine.factory import load_engine
from service.engine.runtimes.base import MeasuredEncoder
from tests.server_process import ROOT

RATE = re.compile(r"scored (\d+) images .* in ([\d.]+) s \(([\d.]+) img/s\), after ([\d.]+) s")


def fill_folder(work: Path, name: str, data: bytes, count: int) -> Path:
    folder = work / f"batch-{name}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for index in range(count):
        (folder / f"{index:05d}.jpg").write_bytes(data)
    return folder


def cli_run(store: Path, folder: Path, count: int) -> dict[str, float]:
    """Score the folder with ``python -m service.batch``; the CLI's own figures."""
    out = folder.with_suffix(".parquet")
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "service.batch", "--model-store", str(store)]
    command += ["--tasks", "age", "--input", str(folder), "--output", str(out), "--no-progress"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    match = RATE.search(result.stdout)
    if match is None:
        raise RuntimeError(f"no summary in the batch output:\n{result.stdout}\n{result.stderr}")
    scored, seconds, rate, startup = match.groups()
    if int(scored) != count:
        raise RuntimeError(f"batch scored {scored} of {count} images:\n{result.stdout}")
    return {
        "images": count,
        "img_s": count / float(seconds) if float(seconds) else float(rate),  # more digits
        "seconds": float(seconds),
        "startup_s": float(startup),
    }


def interleaved(
    store: Path,
    folder: Path,
    segment_images: int,
    rounds: int,
    limit_for: Callable[[float], float],
    cpu_cores: int = 0,
) -> dict[str, Any]:
    """``rounds`` x (local mode on ``segment_images`` images, then the limit for as long).
    ``cpu_cores``: the engine's encoder cores (0: all, as the CLI)."""
    paths = sorted(str(path) for path in folder.iterdir())[:segment_images]
    out = folder.with_suffix(".segment.parquet")
    job = BatchJob(store=store, out=out, tasks=("age",), progress=False)
    engine = load_engine(store, job.engine_config(cpu_cores))
    [(backbone, runtime)] = engine.backbones.items()
    # the limit runs as long as each segment did, so both rates share batch["seconds"]
    batch = {"images": 0, "seconds": 0.0, "encoder_s": 0.0, "batches": 0.0, "limit_images": 0.0}
    ratios = []
    try:
        for _ in range(rounds):
            shutil.rmtree(job.out, ignore_errors=True)
            summary = Summary(total=len(paths))
            before = encoder_figures(backbone)
            asyncio.run(score_into_output(engine, job, paths, summary))
            summary.finish()
            after = encoder_figures(backbone)
            if summary.scored != len(paths) or summary.errors:
                raise RuntimeError(f"segment scored {summary.scored}, errors {summary.errors}")
            rate = limit_for(summary.seconds)
            batch["images"] += summary.scored
            batch["seconds"] += summary.seconds
            batch["encoder_s"] += after[0] - before[0]
            batch["batches"] += after[1] - before[1]
            batch["limit_images"] += rate * summary.seconds
            ratios.append(summary.rate / rate)
        workers, batch_size = runtime.batcher.workers, runtime.batcher.max_batch_size
    finally:
        engine.stop()
    batch_rate = batch["images"] / batch["seconds"]
    limit_rate = batch["limit_images"] / batch["seconds"]
    return {
        "rounds": rounds,
        "segment_images": len(paths),
        "batch_img_s": batch_rate,
        "limit_img_s": limit_rate,
        "x_limit": batch_rate / limit_rate,
        "x_limit_by_round": ratios,
        # the engine's own metrics: how much of the time its workers spent encoding
        "encoder_busy": batch["encoder_s"] / (workers * batch["seconds"]),
        "mean_batch": batch["images"] / batch["batches"],
        "batch_size": batch_size,
        "workers": workers,
    }


def encoder_figures(backbone: str) -> tuple[float, float]:
    """(seconds spent in forward passes, forward passes) so far, from the engine's metrics."""
    labels = {"backbone": backbone}
    seconds = REGISTRY.get_sample_value("oclip_inference_duration_seconds_sum", labels)
    batches = REGISTRY.get_sample_value("oclip_batch_size_count", labels)
    return seconds or 0.0, batches or 0.0


def bench_batch(
    store: Path,
    work: Path,
    payloads: dict[str, bytes],
    quick: bool,
    tower: MeasuredEncoder,
    best: Layout,
    preprocess_ms: dict[str, float],
) -> dict[str, Any]:
    """Each payload: the CLI end to end, then local mode interleaved with the limit (at the
    limit's ``best`` layout). The largest payload once more with the encoder on all cores
    but one, against the limit on as many: does decoding keep up when it has a core?"""
    cores = os.cpu_count() or 1
    runs = {}
    for name, data in payloads.items():
        small = name == "224px"
        count = (48 if quick else 200) if small else (24 if quick else 64)
        folder = fill_folder(work, name, data, count)
        run = cli_run(store, folder, count)
        print(f"  batch  {name:6} CLI {run['img_s']:6.1f} img/s", flush=True)
        rounds = 2 if quick else 6
        # segments long enough that the pipeline's fill and drain are a few % of them
        limit = functools.partial(sustained_rate, tower, best)
        run |= interleaved(store, folder, count, rounds, limit)
        # What the limit allows once this image's preprocessing shares the same cores.
        core_s = cores / run["limit_img_s"] + preprocess_ms[name] / 1000
        run["ceiling_img_s"] = cores / core_s
        runs[name] = run
        _print(name, run)
        if not small and cores > 1:
            spare = Layout(1, cores - 1, best.batch)
            name = f"{name}, encoder on {cores - 1} of {cores} cores"
            limit = functools.partial(sustained_rate, tower, spare)
            runs[name] = interleaved(store, folder, count, rounds, limit, cores - 1)
            _print(name, runs[name])
    return {"cores": cores, "runs": runs}


def _print(name: str, run: dict[str, Any]) -> None:
    print(
        f"  batch  {name:6} interleaved {run['batch_img_s']:6.1f} img/s, "
        f"limit {run['limit_img_s']:6.1f} img/s: {run['x_limit']:.2f}x",
        flush=True,
    )
