"""Choosing a backbone's runtime: the one asked for, or (``auto``) the fastest measured
among those installed that pass the parity gate. Runs at start-up and reload only."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from service.engine.device import Placement
from service.engine.preprocess import ImageLimits, Preprocessor
from service.engine.runtimes.base import MeasuredEncoder
from service.engine.runtimes.parity import ParityReport, check_parity, probe_pixels
from service.engine.runtimes.registry import RUNTIMES, BuildContext, RuntimeSpec
from service.engine.vision import VisionTower
from service.registry import LoadedBackbone, LoadedTask
from service.registry.exports import ExportCache

log = logging.getLogger(__name__)

CALIBRATION_FILES = (".jpg", ".jpeg", ".png", ".webp")


def select_encoder(
    loaded: LoadedBackbone,
    placement: Placement,
    runtime: str,
    tasks: Sequence[LoadedTask],
    *,
    workers: int = 0,
    cores: int = 0,
    allow_int8: bool = False,
    int8_calibration_dir: Path | None = None,
    calibration_rounds: int = 2,
    specs: Mapping[str, RuntimeSpec] = RUNTIMES,
) -> MeasuredEncoder:
    """The encoder to serve ``loaded`` with.

    ``torch`` (or any device but the CPU) builds the eager tower as before. A named runtime
    must be installed (else :class:`ValueError`) and pass parity, or torch is served and
    the log says why. ``auto`` gates every installed runtime (INT8 only if ``allow_int8``)
    and serves the fastest of torch and those that passed, measured in the layout each is
    served in.
    """
    served = VisionTower(loaded, placement)
    served.runtime_info.requested = runtime
    if runtime == "torch" or placement.device.type != "cpu":
        if runtime not in ("torch", "auto"):
            raise ValueError(f"runtime {runtime!r} runs on the CPU only, not {placement.device}")
        return served
    names = _candidates(runtime, allow_int8, specs)
    if not names:
        served.runtime_info.note = "no optional runtime installed"
        return served
    reference = served if placement.precision == "fp32" else VisionTower(loaded, _CPU_FP32)
    probe = probe_pixels(loaded.manifest.preprocess)
    expected = reference.encode(probe)
    context = BuildContext(
        loaded=loaded,
        reference=reference.model,
        cache=ExportCache(loaded.folder, loaded.weights_sha256),
        threads=max(1, (cores or torch.get_num_threads()) // max(workers, 1)),
        float_precision="bf16" if placement.precision == "bf16" else "fp32",
        # INT8's images are read and preprocessed only when INT8 is a candidate
        calibration=(
            _calibration(loaded, int8_calibration_dir, probe) if "openvino-int8" in names else probe
        ),
    )
    passed: dict[str, MeasuredEncoder] = {"torch": served}
    reports: dict[str, ParityReport] = {"torch": _gate("torch", served, expected, probe, tasks)}
    for name in names:
        try:
            candidate = specs[name].build(context)
        except Exception as exc:  # a runtime that cannot build is not served, with a reason
            log.error("runtime %s for %s could not be built: %r", name, loaded.manifest.id, exc)
            continue
        reports[name] = _gate(name, candidate, expected, probe, tasks)
        if reports[name].passed:
            passed[name] = candidate
    del reference, context
    if runtime != "auto":
        chosen = passed.get(runtime)
        rates: dict[str, float] = {}
    else:
        rates = {
            name: _serving_rate(enc, workers, cores, calibration_rounds)
            for name, enc in passed.items()
        }
        chosen = passed[max(rates, key=rates.__getitem__)]
    if chosen is None:
        log.error("runtime %s failed parity for %s: serving torch", runtime, loaded.manifest.id)
        chosen = served
    info = chosen.runtime_info
    info.requested = runtime
    info.measured_img_s = rates
    info.parity = {name: report.as_dict() for name, report in reports.items()}
    log.info(
        "runtime for %s: %s/%s (asked %s; measured %s)",
        loaded.manifest.id,
        info.name,
        info.precision,
        runtime,
        ", ".join(f"{n} {r:.1f} img/s" for n, r in rates.items()) or "nothing",
    )
    return chosen


_CPU_FP32 = Placement(torch.device("cpu"), "fp32")


def _candidates(runtime: str, allow_int8: bool, specs: Mapping[str, RuntimeSpec]) -> list[str]:
    if runtime != "auto":
        if runtime not in specs:
            raise ValueError(f"runtime {runtime!r} is not one of torch, auto, {', '.join(specs)}")
        missing = specs[runtime].missing()
        if missing:
            raise ValueError(f"runtime {runtime} asked for, but {missing}")
        return [runtime]
    names = []
    for name, spec in specs.items():
        if name.endswith("-int8") and not allow_int8:
            continue
        missing = spec.missing()
        if missing:
            log.info("runtime %s is not a candidate: %s", name, missing)
        else:
            names.append(name)
    return names


def _gate(
    name: str,
    encoder: MeasuredEncoder,
    expected: torch.Tensor,
    probe: torch.Tensor,
    tasks: Sequence[LoadedTask],
) -> ParityReport:
    precision = encoder.runtime_info.precision
    report = check_parity(name, precision, expected, encoder.encode(probe), tasks)
    backbone = encoder.backbone_id
    if report.passed:
        log.info("parity of %s on %s: passed (%s)", name, backbone, report.reason)
    else:
        log.warning("parity of %s on %s: FAILED, not served: %s", name, backbone, report.reason)
    return report


def _serving_rate(encoder: MeasuredEncoder, workers: int, cores: int, rounds: int) -> float:
    """Images per second in the layout the batcher will run ``encoder`` in under load
    (the batcher's own calibration later reuses this one: same arguments, memoized)."""
    count, shared = encoder.layout(workers, cores)
    threads = None if shared is None else max(1, shared // count)
    return encoder.calibrate_batch_size(threads, count, rounds=rounds).img_s


def _calibration(loaded: LoadedBackbone, folder: Path | None, probe: torch.Tensor) -> torch.Tensor:
    """The operator's calibration images, preprocessed as served; else the probe set."""
    if folder is None:
        return probe
    preprocess = Preprocessor(loaded.manifest.preprocess, ImageLimits(max_pixels=100_000_000))
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in CALIBRATION_FILES)
    if not files:
        raise ValueError(f"no calibration images ({', '.join(CALIBRATION_FILES)}) in {folder}")
    return torch.stack([preprocess(p.read_bytes()) for p in files[:300]])
