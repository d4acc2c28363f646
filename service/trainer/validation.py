"""Validation during training: rank probabilities with the server's own matching code."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from service.engine import rank_probabilities
from service.trainer.data import ImageDataset
from service.trainer.model import OrdinalClip
from service.trainer.ordinal_metrics import ordinal_metrics, ordinality


@torch.no_grad()
def encode_all(model: OrdinalClip, dataset: ImageDataset, device: torch.device) -> TensorDataset:
    """Image features of a whole dataset, for a frozen encoder that sees each image once."""
    loader = DataLoader(dataset, batch_size=64)
    features, labels = [], []
    for pixels, rank in tqdm(loader, desc="caching image features", leave=False):
        features.append(model.encode_images(pixels.to(device)).cpu())
        labels.append(rank)
    return TensorDataset(torch.cat(features), torch.cat(labels))


@torch.no_grad()
def predict_probabilities(
    model: OrdinalClip,
    loader: DataLoader,
    cached: bool,
    device: torch.device,
    prototypes: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """N x R rank probabilities (float64) and N rank labels, as the server would score
    these images with the model's prototypes once published (``prototypes``: already
    computed by the caller)."""
    model.eval()
    if prototypes is None:
        prototypes = model.prototypes()
    probabilities, labels = [], []
    for inputs, rank in loader:
        features = inputs.to(device) if cached else model.encode_images(inputs.to(device))
        probabilities.append(rank_probabilities(features, prototypes, model.logit_scale).cpu())
        labels.append(rank)
    return torch.cat(probabilities).double().numpy(), torch.cat(labels).numpy()


def validate(
    model: OrdinalClip, loader: DataLoader, cached: bool, device: torch.device, values: np.ndarray
) -> dict[str, float]:
    model.eval()
    with torch.no_grad():  # the prompt learner and text tower run once per validation
        prototypes = model.prototypes()
    probabilities, labels = predict_probabilities(model, loader, cached, device, prototypes)
    metrics = ordinal_metrics(probabilities, labels, values)
    metrics["ordinality"] = ordinality(prototypes.cpu())
    return metrics
