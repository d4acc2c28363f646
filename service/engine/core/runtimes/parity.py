"""The parity gate: a candidate runtime is served only if it agrees with torch fp32.

On a fixed probe set of 16 deterministic images, compared with eager PyTorch in fp32:
- the smallest cosine between the two feature rows of an image must reach 0.9999 for an
  fp32 candidate and 0.999 for reduced precision (bf16, int8);
- on every served task, the largest change of the expected value must stay within 0.5 %
  of the task's range (highest rank value minus lowest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from service.engine.post import rank_probabilities
from service.registry import LoadedTask
from service.registry.manifest import Preprocess

PROBE_IMAGES = 16
MIN_COSINE = {"fp32": 0.9999, "reduced": 0.999}
MAX_VALUE_SHIFT = 0.005  # of the task's range


def probe_pixels(preprocess: Preprocess, count: int = PROBE_IMAGES) -> torch.Tensor:
    """``count`` deterministic, normalised images: smooth colour fields with edges and a
    little noise (low-frequency structure like photographs, not white noise)."""
    generator = torch.Generator().manual_seed(20260101)
    size = preprocess.image_size
    coarse = torch.rand(count, 3, 6, 6, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic")
    ramp = torch.linspace(0, 1, size)
    images[::2] += 0.3 * (ramp[None, :] > ramp[:, None]).float()  # a hard diagonal edge
    images += 0.05 * torch.rand(images.shape, generator=generator)
    images = images.clamp(0, 1)
    mean = torch.tensor(preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std).view(1, 3, 1, 1)
    return (images - mean) / std


@dataclass(frozen=True)
class ParityReport:
    runtime: str
    precision: str
    min_cosine: float
    max_value_shift: float  # fraction of the task's range, worst task
    worst_task: str | None
    passed: bool
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def expected_values(features: torch.Tensor, task: LoadedTask) -> torch.Tensor:
    """Each image's expected rank value on ``task``, as served."""
    manifest = task.manifest
    probabilities = rank_probabilities(
        features, task.prototypes, manifest.serving_logit_scale()
    ).double()
    return probabilities @ torch.tensor(manifest.values, dtype=torch.float64)


def check_parity(
    runtime: str,
    precision: str,
    reference: torch.Tensor,
    candidate: torch.Tensor,
    tasks: Sequence[LoadedTask],
) -> ParityReport:
    """Compare ``candidate`` features with the torch fp32 ``reference`` on the probe set."""
    cosine = torch.nn.functional.cosine_similarity(reference.double(), candidate.double(), dim=-1)
    min_cosine = float(cosine.min())
    floor = MIN_COSINE["fp32" if precision == "fp32" else "reduced"]
    shift, worst = 0.0, None
    for task in tasks:
        values = task.manifest.values
        span = values[-1] - values[0]
        change = (expected_values(reference, task) - expected_values(candidate, task)).abs()
        if float(change.max()) / span >= shift:
            shift, worst = float(change.max()) / span, task.manifest.task
    problems = []
    if not min_cosine >= floor:
        problems.append(f"min cosine {min_cosine:.6f} < {floor} ({precision})")
    if not shift <= MAX_VALUE_SHIFT:
        problems.append(
            f"expected value of {worst} moves {100 * shift:.3f} % of its range "
            f"(> {100 * MAX_VALUE_SHIFT:g} %)"
        )
    passed = not problems
    reason = (
        f"min cosine {min_cosine:.6f} >= {floor}, largest expected-value change "
        f"{100 * shift:.3f} % of range"
        if passed
        else "; ".join(problems)
    )
    return ParityReport(runtime, precision, min_cosine, shift, worst, passed, reason)
