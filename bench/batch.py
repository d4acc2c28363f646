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
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.batch.job import BatchJob
from service.batch.local import score_into_output
from service.batch.summary import Summary
from service.engine.factory import load_engine
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
) -> dict[str, Any]:
    """``rounds`` x (local mode on ``segment_images`` images, then the limit for as long)."""
    paths = sorted(str(path) for path in folder.iterdir())[:segment_images]
    out = folder.with_suffix(".segment.parquet")
    job = BatchJob(store=store, out=out, tasks=("age",), progress=False)
    engine = load_engine(store, job.engine_config())
    batch = {"images": 0, "seconds": 0.0}
    limit = {"images": 0.0, "seconds": 0.0}
    ratios = []
    try:
        for _ in range(rounds):
            shutil.rmtree(job.out, ignore_errors=True)
            summary = Summary(total=len(paths))
            asyncio.run(score_into_output(engine, job, paths, summary))
            summary.finish()
            if summary.scored != len(paths) or summary.errors:
                raise RuntimeError(f"segment scored {summary.scored}, errors {summary.errors}")
            rate = limit_for(summary.seconds)
            batch["images"] += summary.scored
            batch["seconds"] += summary.seconds
            limit["images"] += rate * summary.seconds
            limit["seconds"] += summary.seconds
            ratios.append(summary.rate / rate)
    finally:
        engine.stop()
    batch_rate = batch["images"] / batch["seconds"]
    limit_rate = limit["images"] / limit["seconds"]
    return {
        "rounds": rounds,
        "segment_images": len(paths),
        "batch_img_s": batch_rate,
        "limit_img_s": limit_rate,
        "x_limit": batch_rate / limit_rate,
        "x_limit_by_round": ratios,
        "x_limit_median_round": statistics.median(ratios),
    }


def bench_batch(
    store: Path,
    work: Path,
    payloads: dict[str, bytes],
    quick: bool,
    limit_for: Callable[[float], float],
    preprocess_ms: dict[str, float],
) -> dict[str, Any]:
    """Each payload: the CLI end to end, then local mode interleaved with the limit."""
    cores = os.cpu_count() or 1
    runs = {}
    for name, data in payloads.items():
        small = name == "224px"
        count = (48 if quick else 200) if small else (24 if quick else 64)
        folder = fill_folder(work, name, data, count)
        run = cli_run(store, folder, count)
        print(f"  batch  {name:6} CLI {run['img_s']:6.1f} img/s", flush=True)
        segment = (48 if quick else 100) if small else (24 if quick else 40)
        run |= interleaved(store, folder, min(segment, count), 2 if quick else 5, limit_for)
        # What the limit allows once this image's preprocessing shares the same cores.
        core_s = cores / run["limit_img_s"] + preprocess_ms[name] / 1000
        run["ceiling_img_s"] = cores / core_s
        print(
            f"  batch  {name:6} interleaved {run['batch_img_s']:6.1f} img/s, "
            f"limit {run['limit_img_s']:6.1f} img/s: {run['x_limit']:.2f}x",
            flush=True,
        )
        runs[name] = run
    return {"cores": cores, "runs": runs}
