"""Choosing how a backbone is served: the runtime, the precision and the layout.

``auto`` (the default on a CPU) builds every installed runtime at every precision the CPU
computes natively, screens them (one short timed round each), gates them against the fp32
tower (parity) fastest first until two pass, times every layout of those two, and serves
the best. A named runtime is gated the same way
and only its layouts are timed. The whole outcome is cached beside the backbone, keyed by the
CPU, the runtimes' versions and what was searched, so a second start builds only the chosen
candidate, checks its parity again and measures nothing. Runs at start-up and reload only.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from service.engine.core.device import Placement, native_precisions, usable_cores
from service.engine.core.runtimes.base import MeasuredEncoder
from service.engine.core.runtimes.candidates import Candidate, Reference, candidates_for
from service.engine.core.runtimes.catalog import RUNTIMES, BuildContext, RuntimeSpec
from service.engine.core.runtimes.layout import TIE, LayoutChoice, cache_key
from service.engine.core.runtimes.torch_runtime import VisionTower
from service.imaging import ImageLimits, Preprocessor
from service.registry import LoadedBackbone, LoadedTask
from service.registry.exports import ExportCache

log = logging.getLogger(__name__)

CALIBRATION_FILES = (".jpg", ".jpeg", ".png", ".webp")
RECORD_FILE = "selection.json"
FINALISTS = 2  # candidates whose every layout is timed, after one screening round each
SCREEN_BATCH = 2


@dataclass(frozen=True)
class Search:
    """What to measure: the operator's fixed workers, cores and batch size (0: measure),
    the timed rounds, and the slowest batch the admission target allows."""

    workers: int = 0
    cores: int = 0
    batch_size: int = 0
    rounds: int = 2
    max_batch_s: float = float("inf")


def select_encoder(
    loaded: LoadedBackbone,
    placement: Placement,
    runtime: str,
    tasks: Sequence[LoadedTask],
    search: Search = Search(),
    *,
    precision: str = "auto",
    allow_int8: bool = False,
    int8_calibration_dir: Path | None = None,
    specs: Mapping[str, RuntimeSpec] = RUNTIMES,
) -> MeasuredEncoder:
    """The encoder to serve ``loaded`` with, its ``runtime_info.layout`` set.

    ``precision``: the operator's (``auto``: every precision native to this CPU is a
    candidate; ``placement.precision`` is then only the fallback). A named runtime must be
    installed (else :class:`ValueError`); one that fails parity is not served, torch is,
    and the log says why.
    """
    if placement.device.type != "cpu":
        if runtime not in ("torch", "auto"):
            raise ValueError(f"runtime {runtime!r} runs on the CPU only, not {placement.device}")
        return _finish(VisionTower(loaded, placement), search, runtime, {})
    precisions = native_precisions() if precision == "auto" else [placement.precision]
    cache = ExportCache(loaded.folder, loaded.weights_sha256)
    reference = Reference(loaded, tasks)

    def context() -> BuildContext:
        return BuildContext(
            loaded=loaded,
            reference=reference.tower.model,
            cache=cache,
            threads=search.cores or usable_cores(),
            calibration=(
                _calibration(loaded, int8_calibration_dir, reference.probe)
                if allow_int8 or runtime == "openvino-int8"
                else reference.probe
            ),
        )

    candidates = candidates_for(loaded, runtime, precisions, allow_int8, specs, reference, context)
    key = cache_key(
        candidates=[c.label for c in candidates],
        versions=_versions(),
        search=search.__dict__,
        tie=TIE,  # the rule that chooses is part of the answer
        backbone=loaded.manifest.id,
    )
    served = _from_record(_cached(cache, key), candidates, reference, search, runtime)
    if served is not None:
        return served
    outcome: dict[str, Any] = {}

    def measure(folder: Path) -> None:
        outcome.update(_measure(candidates, reference, search))
        record = {
            "chosen": outcome["encoder"].runtime_info.label,
            "layout": outcome["layout"].as_dict(),
            "measured": outcome["measured"],
            "screened": outcome["screened"],
            "parity": outcome["parity"],
        }
        (folder / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")

    shutil.rmtree(cache.folder("selection", key), ignore_errors=True)  # stale or unusable
    cache.get_or_build("selection", key, measure)
    if not outcome:  # a concurrent start measured first: serve its choice
        served = _from_record(_cached(cache, key), candidates, reference, search, runtime)
        if served is not None:
            return served
        outcome.update(_measure(candidates, reference, search))
    return _finish(outcome["encoder"], search, runtime, outcome)


def _from_record(
    record: dict[str, Any] | None,
    candidates: list[Candidate],
    reference: Reference,
    search: Search,
    runtime: str,
) -> MeasuredEncoder | None:
    """The choice an earlier start recorded, built and gated again (None: measure)."""
    if record is None:
        return None
    encoder = _rebuild(record, candidates, reference)
    if encoder is None:
        return None
    return _finish(
        encoder, search, runtime, {**record, "layout": LayoutChoice.from_dict(record["layout"])}
    )


def _measure(candidates: list[Candidate], reference: Reference, search: Search) -> dict[str, Any]:
    """Build every candidate, screen them, gate them fastest first until FINALISTS pass,
    time the finalists' layouts, choose. Only a candidate that could be served is gated:
    the gate costs a forward of the probe set, several seconds on a slow fp32 runtime."""
    built: list[Candidate] = []
    for candidate in candidates:
        try:
            candidate.encoder = candidate.build()
        except Exception as exc:  # an optional runtime that cannot build is not served
            if candidate.label.startswith("torch/"):
                raise  # the artifact itself is broken: no runtime can serve it
            log.error("%s could not be built: %r", candidate.label, exc)
            continue
        built.append(candidate)
    screened = {c.label: _screen(c, search) for c in built} if len(built) > FINALISTS else {}
    parity: dict[str, dict[str, Any]] = {}
    finalists: list[Candidate] = []
    for candidate in sorted(built, key=lambda c: -screened.get(c.label, 0.0)):
        if len(finalists) == FINALISTS:
            parity[candidate.label] = {"passed": None, "reason": "not gated: slower at screening"}
            continue
        assert candidate.encoder is not None
        report = reference.gate(candidate.encoder)
        parity[candidate.label] = report.as_dict()
        if report.passed:
            finalists.append(candidate)
    if not finalists:  # fp32 torch always passes against itself; only a broken build gets here
        raise RuntimeError(f"no runtime could be built: {', '.join(parity) or 'none tried'}")
    choices = {c.label: _layout(c, search) for c in finalists}
    best = max(finalists, key=lambda c: choices[c.label].img_s)
    measured = {label: choice.img_s for label, choice in choices.items()}
    for candidate in built:
        if candidate is not best:
            candidate.encoder = None  # free the losers' weights now
    return {
        "encoder": best.encoder,
        "layout": choices[best.label],
        "measured": measured,
        "screened": screened,
        "parity": parity,
    }


def _screen(candidate: Candidate, search: Search) -> float:
    """One timed round at a small batch in the first layout: enough to drop the slow ones."""
    encoder = candidate.encoder
    assert encoder is not None
    shapes = encoder.shapes(search.workers, search.cores)[:1]
    return encoder.calibrate_layout(
        shapes, batch_size=search.batch_size or SCREEN_BATCH, rounds=1
    ).img_s


def _layout(candidate: Candidate, search: Search) -> LayoutChoice:
    encoder = candidate.encoder
    assert encoder is not None
    return encoder.calibrate_layout(
        encoder.shapes(search.workers, search.cores),
        batch_size=search.batch_size,
        rounds=search.rounds,
        max_batch_s=search.max_batch_s,
    )


def _rebuild(
    record: dict[str, Any], candidates: list[Candidate], reference: Reference
) -> MeasuredEncoder | None:
    """The recorded choice, built and gated again (None: measure anew)."""
    chosen = next((c for c in candidates if c.label == record.get("chosen")), None)
    if chosen is None:
        return None
    try:
        encoder = chosen.build()
    except Exception as exc:
        if chosen.label.startswith("torch/"):
            raise  # the artifact itself is broken
        log.error("cached choice %s could not be built: %r; measuring again", chosen.label, exc)
        return None
    if not reference.gate(encoder).passed:
        return None
    log.info("serving %s on %s as measured at an earlier start", chosen.label, encoder.backbone_id)
    return encoder


def _finish(
    encoder: MeasuredEncoder, search: Search, runtime: str, outcome: dict[str, Any]
) -> MeasuredEncoder:
    """Record on ``encoder`` what was asked, measured and gated; time its layouts if that
    was not done yet (a GPU, or a single candidate)."""
    info = encoder.runtime_info
    info.requested = runtime
    info.measured_img_s = outcome.get("measured", {})
    info.screened_img_s = outcome.get("screened", {})
    info.parity = outcome.get("parity", {})
    info.layout = outcome.get("layout") or _layout(
        Candidate(info.label, lambda: encoder, encoder), search
    )
    measured = info.measured_img_s
    log.info(
        "serving %s on %s/%s in layout %s at %.1f img/s (asked %s; measured %s)",
        encoder.backbone_id,
        info.name,
        info.precision,
        info.layout.layout,
        info.layout.img_s,
        runtime,
        ", ".join(f"{n} {r:.1f} img/s" for n, r in measured.items()) or "nothing else",
    )
    return encoder


def _cached(cache: ExportCache, key: str) -> dict[str, Any] | None:
    folder = cache.folder("selection", key)
    if cache.problem(folder) is not None:
        return None
    try:
        record: dict[str, Any] = json.loads((folder / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record


def _versions() -> dict[str, str]:
    versions = {"torch": torch.__version__}
    for name in ("onnxruntime", "openvino", "nncf"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def _calibration(loaded: LoadedBackbone, folder: Path | None, probe: torch.Tensor) -> torch.Tensor:
    """The operator's calibration images, preprocessed as served; else the probe set."""
    if folder is None:
        return probe
    preprocess = Preprocessor(loaded.manifest.preprocess, ImageLimits(max_pixels=100_000_000))
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in CALIBRATION_FILES)
    if not files:
        raise ValueError(f"no calibration images ({', '.join(CALIBRATION_FILES)}) in {folder}")
    return torch.stack([preprocess(p.read_bytes()) for p in files[:300]])
