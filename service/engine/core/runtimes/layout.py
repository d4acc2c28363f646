"""The serving layout of an encoder, chosen by measurement on the machine found at start-up.

A layout is how many batcher workers run forward passes at once, how many intra-op threads
each uses, and the largest batch each packs. Which one serves the most images per second
depends on the CPU (AMX or not, AVX-512 or not), the runtime and the precision: on a
2-core Xeon with AMX two workers of one thread won, on a 2-core Xeon without AMX one worker
of two threads won by 2x. So nothing is assumed: every layout that makes sense on the cores
found is timed, the figures are logged, and the best is served. The figures are cached
beside the backbone, keyed by everything they depend on, so a second start measures nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from service.engine.core.device import cpu_signature

log = logging.getLogger(__name__)

MAX_WORKERS = 4  # more forward workers than this only split the cores into slivers
# Layouts within 1 % of the best count as equal: the smallest batch wins. (3 % cost 3-5 %
# under load on one core, where b1/b2/b4 timed 5.7/5.8/5.8 at start-up, 5.6/5.8/5.9 sustained.)
TIE = 0.99

RoundTimer = Callable[[int, int | None, int], float]  # (batch, threads, workers) -> seconds


@dataclass(frozen=True, order=True)
class EncoderLayout:
    """``workers`` threads run forward passes at once, each with ``threads`` intra-op
    threads (None: the runtime sizes its own pool, or the GPU runs it), on batches of at
    most ``batch_size`` images."""

    workers: int
    threads: int | None
    batch_size: int

    def __str__(self) -> str:
        threads = "pool" if self.threads is None else f"{self.threads}t"
        return f"{self.workers}x{threads} b{self.batch_size}"

    @property
    def cores(self) -> int | None:
        """The cores the workers share (None: not the batcher's to split)."""
        return None if self.threads is None else self.workers * self.threads


@dataclass(frozen=True)
class LayoutChoice:
    """The layout served, its measured throughput, and every candidate's figure."""

    layout: EncoderLayout
    img_s: float
    figures: dict[str, float] = field(default_factory=dict)  # str(layout) -> img/s
    cached: bool = False  # read from an earlier start's measurement

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.layout),
            "img_s": round(self.img_s, 2),
            "candidates": {name: round(rate, 2) for name, rate in self.figures.items()},
            "cached": self.cached,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> LayoutChoice:
        layout = EncoderLayout(data["workers"], data["threads"], data["batch_size"])
        return LayoutChoice(layout, data["img_s"], dict(data["candidates"]), cached=True)


def worker_shapes(
    cores: int, workers: int = 0, own_pool: bool = False
) -> list[tuple[int, int | None]]:
    """(workers, intra-op threads) pairs worth timing on ``cores`` cores: every way to split
    them evenly into at most MAX_WORKERS workers. ``workers`` set by the operator is kept.
    A runtime with its own pool (ONNX Runtime, OpenVINO, CUDA) gets one worker unless told
    otherwise: two pools on the same cores fight."""
    if own_pool:
        return [(workers or 1, None)]
    if workers:
        return [(workers, max(1, cores // workers))]
    return [(w, cores // w) for w in range(1, min(cores, MAX_WORKERS) + 1) if cores % w == 0]


def search_layouts(
    time_round: RoundTimer,
    shapes: Sequence[tuple[int, int | None]],
    *,
    batch_size: int = 0,
    rounds: int = 2,
    limit: int = 64,
    budget_s: float = 0.5,
    max_batch_s: float = float("inf"),
    label: str = "",
) -> LayoutChoice:
    """Time every (shape, batch size) and choose the fastest.

    ``time_round(batch, threads, workers)`` returns the seconds for ``workers`` threads,
    released together, to encode one batch each: the way the batcher runs under load.
    Per shape an untimed pass doubles the batch from 1 until a round takes over
    ``budget_s`` (bounding start-up) or ``limit``; a batch slower than ``max_batch_s``
    alone (the latency the admission target allows) is no candidate, unless it is the
    smallest. ``batch_size`` > 0 fixes the size (the operator chose it). Then ``rounds``
    timed passes visit every candidate in turn, so a slow spell of a shared machine hits
    all of them alike. Near-equals (within 1 %) go to the smallest batch, then the fewest
    workers: both lower a lone request's latency.
    """
    candidates: list[EncoderLayout] = []
    for workers, threads in shapes:
        if batch_size:
            time_round(batch_size, threads, workers)  # untimed: first-call costs
            candidates.append(EncoderLayout(workers, threads, batch_size))
            continue
        size = 1
        while size <= limit:
            seconds = time_round(size, threads, workers)
            if seconds > max_batch_s and size > 1:
                break
            candidates.append(EncoderLayout(workers, threads, size))
            if seconds > budget_s:
                break
            size *= 2
    totals = dict.fromkeys(candidates, 0.0)
    for _ in range(rounds):
        for layout in candidates:
            totals[layout] += time_round(layout.batch_size, layout.threads, layout.workers)
    rates = {
        layout: layout.workers * layout.batch_size * rounds / max(totals[layout], 1e-9)
        for layout in candidates
    }
    best = max(rates.values())
    chosen = min(
        (layout for layout, rate in rates.items() if rate >= TIE * best),
        key=lambda layout: (layout.batch_size, layout.workers),
    )
    log.info(
        "layout calibration%s: %s -> %s",
        f" on {label}" if label else "",
        ", ".join(f"{layout}: {rate:.1f} img/s" for layout, rate in rates.items()),
        chosen,
    )
    return LayoutChoice(chosen, rates[chosen], {str(k): v for k, v in rates.items()})


def cache_key(**parts: Any) -> str:
    """A short stable name for a measurement's inputs (the CPU, the runtime and its version,
    the layouts searched); the weights' sha256 is added by the export cache's folder."""
    text = json.dumps({**cpu_signature(), **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]
