"""Calibration: a temperature fitted by NLL, then a split-conformal central interval mass.

Softmax confidence of a fine-tuned CLIP is rarely honest and the logit scale was never fitted
for it. Two corrections, both fitted on a labelled calibration list the model never trained on:

1. temperature ``T`` minimising the NLL of softmax(logit_scale / T * cos) (one convex 1-D fit);
2. the smallest central mass ``m`` whose served interval holds the true value for at least
   ceil((n + 1) * level) images of the n: split-conformal, so that on new data *like* the
   calibration list the level-interval covers at least ``level`` of answers (marginally).

The result is a new task version whose manifest carries a :class:`Calibration` block; the
engine serves it through ``TaskManifest.serving_logit_scale`` and ``interval_mass``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from service.registry import ModelStore, TaskManifest
from service.registry.files import atomic_text
from service.registry.manifest import Calibration
from service.registry.store import sha256_of
from service.trainer.data import read_samples
from service.trainer.distribution_scores import coverage, nll
from service.trainer.evaluate import Encoded, encode_list, served_probabilities

# Far enough above a conformal score to be on its covered side despite float rounding.
MASS_MARGIN = 1e-6
TEMPERATURE_BOUNDS = (1e-3, 1e3)


def cosines(features: torch.Tensor, prototypes: torch.Tensor) -> np.ndarray:
    """cos(image, prototype_r), N x R in float64: the logits before the logit scale."""
    image = torch.nn.functional.normalize(features.double(), dim=-1)
    return (image @ prototypes.double().T).numpy()


def temperature_nll(cos: np.ndarray, labels: np.ndarray, scale: float) -> float:
    """Exact mean NLL of softmax(scale * cos) (log-domain: no underflow for confident rows)."""
    log_p = log_softmax(scale * cos, axis=1)
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_temperature(cos: np.ndarray, labels: np.ndarray, logit_scale: float) -> float:
    """The ``T`` minimising the NLL of softmax(logit_scale / T * cos); bounded, 1-D.

    NLL is convex in 1/T, so the bounded search over log T finds the one minimum.
    """
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    best = minimize_scalar(
        lambda log_t: temperature_nll(cos, labels, logit_scale / math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-7},
    )
    return float(math.exp(best.x))


def conformal_target(n: int, level: float) -> float:
    """The finite-sample coverage to reach on n calibration images: ceil((n+1) level) / n."""
    return min(math.ceil((n + 1) * level - 1e-9) / n, 1.0)


def conformal_scores(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image, the central mass above which the served interval holds its true rank.

    The interval of mass m cuts tails t = (1 - m) / 2. Rank y is inside when its CDF reaches
    t (low end) and the CDF below it stays under 1 - t (high end): m > max(1 - 2 F(y),
    2 F(y-1) - 1).
    """
    rows = probabilities / probabilities.sum(axis=1, keepdims=True)
    cdf = np.cumsum(rows, axis=1)
    index = np.arange(len(labels))
    at = cdf[index, labels]
    below = np.where(labels > 0, cdf[index, np.maximum(labels - 1, 0)], 0.0)
    return np.maximum(1.0 - 2.0 * at, 2.0 * below - 1.0)


def conformal_mass(
    probabilities: np.ndarray, labels: np.ndarray, values: np.ndarray, level: float
) -> float:
    """The smallest central mass whose served coverage on these rows reaches the target.

    Candidates are the sorted conformal scores from the ceil((n+1) level)-th on; each is
    checked through the engine's own interval code, so the returned mass is what is served.
    """
    n = len(labels)
    target = conformal_target(n, level)
    needed = math.ceil(target * n - 1e-9)
    ordered = np.sort(conformal_scores(probabilities, labels))
    for score in ordered[needed - 1 :]:
        mass = float(min(max(score + MASS_MARGIN, MASS_MARGIN), 1.0))
        if coverage(probabilities, labels, values, mass) >= target - 1e-12:
            return mass
    return 1.0


def calibrate(
    manifest: TaskManifest, prototypes: torch.Tensor, inputs: Encoded, level: float
) -> Calibration:
    """Fit temperature and mass for ``manifest`` (ignoring any earlier calibration).

    Probabilities come from the engine's matching code, so "before" and "after" are what
    the service returns without and with the block.
    """
    values = np.asarray(manifest.values, dtype=np.float64)
    labels = inputs.labels
    before = served_probabilities(inputs.features, prototypes, manifest.logit_scale)
    temperature = fit_temperature(
        cosines(inputs.features, prototypes), labels, manifest.logit_scale
    )
    after = served_probabilities(inputs.features, prototypes, manifest.logit_scale / temperature)
    mass = conformal_mass(after, labels, values, level)
    return Calibration(
        temperature=temperature,
        level=level,
        interval_mass=mass,
        n=len(labels),
        list_sha256=sha256_of(inputs.list_path),
        coverage_before=coverage(before, labels, values, level),
        coverage_after=coverage(after, labels, values, mass),
        nll_before=nll(before, labels),
        nll_after=nll(after, labels),
        source_version=manifest.version,
    )


def publish_calibrated(
    store: ModelStore, manifest: TaskManifest, prototypes: torch.Tensor, block: Calibration
) -> TaskManifest:
    """A new, active version: same prototypes and backbone, plus the calibration block."""
    fields = manifest.model_dump(
        exclude={"format_version", "kind", "version", "files", "created_at", "calibration"}
    )
    fields["provenance"] = {
        **manifest.provenance,
        "calibrated_by": "service.trainer calibrate",
        "calibrated_from": manifest.version,
    }
    return store.publish_task(prototypes, calibration=block, **fields)


def calibrate_published(
    store_root: Path,
    task: str,
    list_path: Path,
    images_root: Path,
    level: float = 0.9,
    precision: str = "fp32",
    version: str | None = None,
) -> TaskManifest:
    """``python -m service.trainer calibrate``: fit on a list, publish a calibrated version."""
    store = ModelStore(store_root)
    encoded = encode_list(store, task, list_path, images_root, precision, version)
    block = calibrate(encoded.task.manifest, encoded.task.prototypes, encoded, level)
    return publish_calibrated(store, encoded.task.manifest, encoded.task.prototypes, block)


def split_list(
    source: Path, images_root: Path, num_ranks: int, share: float, seed: int, out: Path
) -> tuple[Path, Path]:
    """Hold out ``share`` of each rank of a list for calibration (``fit --calibrate-split``).

    Writes ``out/val_fit.txt`` and ``out/calibration.txt`` with absolute paths (any list
    format in, the plain list format out), atomically: torchrun ranks all write the same.
    """
    if not 0 < share < 1:
        raise ValueError(f"calibration share {share} is not between 0 and 1")
    rng = np.random.default_rng(seed)
    kept, held = [], []
    samples = read_samples(source, images_root, num_ranks)
    for rank in range(num_ranks):
        group = [s for s in samples if s.rank == rank]
        order = rng.permutation(len(group))
        cut = round(share * len(group))
        held += [group[i] for i in order[:cut]]
        kept += [group[i] for i in order[cut:]]
    if not held or not kept:
        raise ValueError(f"{len(samples)} samples in {source} are too few to split {share:g}")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, chosen in (("val_fit.txt", kept), ("calibration.txt", held)):
        atomic_text(out / name, "".join(f"{s.path.resolve()} {s.rank}\n" for s in chosen))
        paths.append(out / name)
    return paths[0], paths[1]
