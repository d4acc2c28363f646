"""The candidates a backbone may be served on: (runtime, precision) pairs, built lazily,
and the fp32 reference they are gated against."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from service.engine.core.device import Placement
from service.engine.core.runtimes.base import MeasuredEncoder
from service.engine.core.runtimes.catalog import BuildContext, RuntimeSpec
from service.engine.core.runtimes.parity import ParityReport, check_parity, probe_pixels
from service.engine.core.runtimes.torch_runtime import VisionTower
from service.registry import LoadedBackbone, LoadedTask

log = logging.getLogger(__name__)

_CPU_FP32 = Placement(torch.device("cpu"), "fp32")


class Reference:
    """The fp32 torch tower and its features on the probe set, built once when first
    needed: the parity gate's yardstick, and the fp32 torch candidate itself."""

    def __init__(self, loaded: LoadedBackbone, tasks: Sequence[LoadedTask]) -> None:
        self._loaded = loaded
        self._tasks = tasks
        self._tower: VisionTower | None = None
        self._expected: torch.Tensor | None = None
        self.probe = probe_pixels(loaded.manifest.preprocess)

    @property
    def tower(self) -> VisionTower:
        if self._tower is None:
            self._tower = VisionTower(self._loaded, _CPU_FP32)
        return self._tower

    def gate(self, encoder: MeasuredEncoder) -> ParityReport:
        if self._expected is None:
            self._expected = self.tower.encode(self.probe)
        info = encoder.runtime_info
        # the reference against itself: the same features, no second forward
        actual = self._expected if encoder is self._tower else encoder.encode(self.probe)
        report = check_parity(info.name, info.precision, self._expected, actual, self._tasks)
        name = encoder.backbone_id
        if report.passed:
            log.info("parity of %s on %s: passed (%s)", info.label, name, report.reason)
        else:
            log.warning(
                "parity of %s on %s: FAILED, not served: %s", info.label, name, report.reason
            )
        return report


@dataclass
class Candidate:
    label: str  # runtime/precision
    build: Callable[[], MeasuredEncoder]
    encoder: MeasuredEncoder | None = None


def candidates_for(
    loaded: LoadedBackbone,
    runtime: str,
    precisions: list[str],
    allow_int8: bool,
    specs: Mapping[str, RuntimeSpec],
    reference: Reference,
    context: Callable[[], BuildContext],
) -> list[Candidate]:
    """Every (runtime, precision) to try, not yet built."""
    if runtime not in ("torch", "auto", *specs):
        raise ValueError(f"runtime {runtime!r} is not one of torch, auto, {', '.join(specs)}")
    found: list[Candidate] = []
    if runtime in ("torch", "auto"):
        for precision in precisions:
            place = Placement(torch.device("cpu"), precision)
            build: Callable[[], MeasuredEncoder] = (
                (lambda: reference.tower)
                if precision == "fp32"
                else (lambda p=place: VisionTower(loaded, p))
            )
            found.append(Candidate(f"torch/{precision}", build))
    contexts: list[BuildContext] = []  # one, shared: exports are made once

    def shared() -> BuildContext:
        if not contexts:
            contexts.append(context())
        return contexts[0]

    for name, spec in specs.items():
        if runtime not in ("auto", name) or (name.endswith("-int8") and not allow_int8):
            continue
        missing = spec.missing()
        if missing:
            if runtime == name:
                raise ValueError(f"runtime {name} asked for, but {missing}")
            log.info("runtime %s is not a candidate: %s", name, missing)
            continue
        served = [p for p in spec.precisions if p in precisions or p == "int8"]
        if not served and runtime == name:  # named, but not at that precision: its most exact
            served = [spec.precisions[-1]]
            log.warning("runtime %s has no %s: it serves %s", name, "/".join(precisions), served[0])
        found.extend(
            Candidate(f"{name}/{p}", lambda s=spec, p=p: s.build(shared(), p)) for p in served
        )
    return found
