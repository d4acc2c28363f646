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
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import REGISTRY

from bench.limit import sustained_rate
from service.batch.job import BatchJob
from service.batch.local import score_into_output
from service.batch.summary import Summary
from service.engine.core.device import usable_cores
from service.engine.core.runtimes.base import MeasuredEncoder
from service.engine.core.runtimes.layout import EncoderLayout
from service.engine.engine import InferenceEngine
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


def cli_run(store: Path, folder: Path, count: int, served: dict[str, str]) -> dict[str, float]:
    """Score the folder with ``python -m service.batch`` on the ``served`` runtime and
    precision (those the limit is measured on); the CLI's own figures."""
    out = folder.with_suffix(".parquet")
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "service.batch", "--model-store", str(store)]
    command += ["--tasks", "age", "--input", str(folder), "--output", str(out), "--no-progress"]
    command += [part for option, value in served.items() for part in (f"--{option}", value)]
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


@dataclass
class Totals:
    """Sums over the timed rounds of one interleaved run."""

    images: int = 0
    seconds: float = 0.0
    limit_images: float = 0.0  # what the limit did in spells as long as the segments
    encoder_s: float = 0.0  # forward-pass seconds, from the engine's metrics
    batches: float = 0.0
    encoder_cpu_s: float = 0.0  # CPU time of the engine's encoder threads
    process_cpu_s: float = 0.0
    by_round: list[tuple[float, float, float]] = field(default_factory=list)  # img, s, limit img


def interleaved(
    store: Path,
    folder: Path,
    segment_images: int,
    rounds: int,
    limit_for: Callable[[float], float],
    served: dict[str, str],
    cpu_cores: int = 0,
) -> dict[str, Any]:
    """``rounds`` x (local mode on ``segment_images`` images, and the limit for as long),
    in alternating order (AB BA ...), so that a drift of the machine's speed within a round
    pair falls on both alike. One untimed segment first: the first-call costs (imports, the
    Parquet writer, thread pools) belong to start-up, which the CLI's row reports.
    ``cpu_cores``: the engine's encoder cores (0: all, as the CLI)."""
    paths = sorted(str(path) for path in folder.iterdir())[:segment_images]
    out = folder.with_suffix(".segment.parquet")
    job = BatchJob(store=store, out=out, tasks=("age",), progress=False, **served)
    engine = load_engine(store, job.engine_config(cpu_cores))
    [(backbone, runtime)] = engine.backbones.items()
    totals = Totals()
    try:
        _segment(engine, job, paths)
        seconds = 0.0
        for index in range(rounds):
            limit_first = index % 2 == 1  # the previous segment's length sets the spell's
            rate = limit_for(seconds) if limit_first else 0.0
            before = _counters(backbone)
            summary = _segment(engine, job, paths)
            after = _counters(backbone)
            seconds = summary.seconds
            rate = rate if limit_first else limit_for(seconds)
            totals.images += summary.scored
            totals.seconds += seconds
            totals.limit_images += rate * seconds
            totals.encoder_s += after[0] - before[0]
            totals.batches += after[1] - before[1]
            totals.encoder_cpu_s += after[2] - before[2]
            totals.process_cpu_s += after[3] - before[3]
            totals.by_round.append((summary.scored, seconds, rate * seconds))
        workers, batch_size = runtime.batcher.workers, runtime.batcher.max_batch_size
    finally:
        engine.stop()
    cores = cpu_cores or usable_cores()
    return {
        "rounds": rounds,
        "segment_images": len(paths),
        "batch_img_s": totals.images / totals.seconds,
        "limit_img_s": totals.limit_images / totals.seconds,
        **ratio_figures(totals.by_round),
        # the engine's own metrics: how much of the time its workers spent encoding
        "encoder_busy": totals.encoder_s / (workers * totals.seconds),
        # CPU accounting: the encoder threads' share of their cores (what the rest of the
        # pipeline leaves them), and what that rest costs per image
        "encoder_cpu_share": totals.encoder_cpu_s / (cores * totals.seconds),
        "pipeline_cpu_ms": 1000 * (totals.process_cpu_s - totals.encoder_cpu_s) / totals.images,
        "mean_batch": totals.images / totals.batches,
        "batch_size": batch_size,
        "workers": workers,
    }


def _segment(engine: InferenceEngine, job: BatchJob, paths: list[str]) -> Summary:
    """Local mode's own scoring of ``paths`` into a fresh OUT; every image must score."""
    shutil.rmtree(job.out, ignore_errors=True)
    summary = Summary(total=len(paths))
    asyncio.run(score_into_output(engine, job, paths, summary))
    summary.finish()
    if summary.scored != len(paths) or summary.errors:
        raise RuntimeError(f"segment scored {summary.scored}, errors {summary.errors}")
    return summary


def _counters(backbone: str) -> tuple[float, float, float, float]:
    """(forward seconds, forward passes, encoder threads' CPU s, process CPU s) so far."""
    return (*encoder_figures(backbone), _encoder_cpu_s(), time.process_time())


def _encoder_cpu_s() -> float:
    """CPU seconds so far of the engine's encoder threads (the batcher's workers)."""
    return sum(
        time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        for thread in threading.enumerate()
        if thread.name.startswith("batcher-") and thread.ident is not None
    )


def aa_control(limit_for: Callable[[float], float], spell_s: float, rounds: int) -> dict:
    """The measurement's own noise: the limit interleaved with itself, in spells as long as
    the segments and with the same statistics. Its spread is what the machine alone does to
    a ratio that is truly 1.00."""
    by_round = []
    for _ in range(rounds):
        first, second = limit_for(spell_s), limit_for(spell_s)
        by_round.append((first * spell_s, spell_s, second * spell_s))
    return {"rounds": rounds, "spell_s": spell_s, **ratio_figures(by_round)}


def ratio_figures(by_round: list[tuple[float, float, float]]) -> dict[str, Any]:
    """``by_round``: (images, seconds, limit's images in as long). The ratio of the totals
    and the median of the rounds' ratios, each with a 90 % bootstrap interval over rounds.
    The median is the one to read on this machine: its slow spells are heavy-tailed (a
    spell at half speed now and then), and one of them moves a ratio of totals by itself."""
    rounds = np.asarray(by_round, dtype=float)
    ratios = rounds[:, 0] / rounds[:, 2]
    picks = np.random.default_rng(0).integers(0, len(rounds), (5000, len(rounds)))
    totals = rounds[picks, 0].sum(axis=1) / rounds[picks, 2].sum(axis=1)
    medians = np.median(ratios[picks], axis=1)
    return {
        "x_limit": float(rounds[:, 0].sum() / rounds[:, 2].sum()),
        "x_limit_90ci": _interval(totals),
        "x_limit_median": float(np.median(ratios)),
        "x_limit_median_90ci": _interval(medians),
        "x_limit_by_round": ratios.tolist(),
    }


def _interval(samples: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(samples, [5, 95])
    return float(low), float(high)


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
    best: EncoderLayout,
    preprocess_ms: dict[str, float],
) -> dict[str, Any]:
    """Each payload: the CLI end to end, then local mode interleaved with the limit (at the
    limit's ``best`` layout). The largest payload once more with the encoder on all cores
    but one, against the limit on as many: does decoding keep up when it has a core?"""
    cores = usable_cores()
    served = {"runtime": tower.runtime_info.name, "precision": tower.placement.precision}
    runs = {}
    for name, data in payloads.items():
        small = name == "224px"
        count = (48 if quick else 200) if small else (24 if quick else 64)
        folder = fill_folder(work, name, data, count)
        run = cli_run(store, folder, count, served)
        print(f"  batch  {name:6} CLI {run['img_s']:6.1f} img/s", flush=True)
        # many short rounds: the machine's speed drifts within seconds, the rounds average it
        # out; each segment is still long enough that its fill and drain are a few %
        segment, rounds = (count, 3) if quick else (min(count, 100), 16 if small else 12)
        limit = functools.partial(sustained_rate, tower, best)
        run |= interleaved(store, folder, segment, rounds, limit, served)
        # What the limit allows once this image's preprocessing shares the same cores.
        core_s = cores / run["limit_img_s"] + preprocess_ms[name] / 1000
        run["ceiling_img_s"] = cores / core_s
        runs[name] = run
        _print(name, run)
        if small:
            spell_s = run["segment_images"] / run["batch_img_s"]
            control = aa_control(limit, spell_s, 3 if quick else 12)
            runs["control: the limit against itself"] = control
            _print("A/A", control)
        if not small and cores > 1:
            spare = EncoderLayout(1, cores - 1, best.batch_size)
            name = f"{name}, encoder on {cores - 1} of {cores} cores"
            limit = functools.partial(sustained_rate, tower, spare)
            segment, rounds = (count, 3) if quick else (count // 2, 10)
            runs[name] = interleaved(store, folder, segment, rounds, limit, served, cores - 1)
            _print(name, runs[name])
    return {"cores": cores, "runs": runs}


def _print(name: str, run: dict[str, Any]) -> None:
    low, high = run["x_limit_median_90ci"]
    rates = (
        f"{run['batch_img_s']:6.1f} img/s, limit {run['limit_img_s']:6.1f} img/s, "
        if "batch_img_s" in run
        else ""
    )
    print(
        f"  batch  {name:6} interleaved {rates}x limit: totals {run['x_limit']:.2f}, "
        f"median {run['x_limit_median']:.2f} (90% interval {low:.2f}-{high:.2f})",
        flush=True,
    )
