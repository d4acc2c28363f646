"""Training and serving share the matching math: the trainer's validation probabilities
equal what the server computes from the published artifacts for the same images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.engine import post as matching
from service.engine.core.device import resolve_placement
from service.engine.core.runtimes.torch_runtime import VisionTower
from service.imaging import ImageLimits, Preprocessor
from service.registry import ModelStore
from service.trainer import validation
from service.trainer.data import read_samples
from service.trainer.distributed import DistContext
from service.trainer.fit_config import TrainConfig
from service.trainer.loop import Trainer
from service.trainer.publish import publish_trained
from service.trainer.synthetic import write_synthetic

RANKS = 6
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    lists = write_synthetic(root, RANKS, {"train": 16, "val": 12}, size=32, seed=0)
    return {"root": root, **lists}


def test_the_trainer_scores_with_the_engines_function() -> None:
    assert validation.rank_probabilities is matching.rank_probabilities


@pytest.mark.parametrize("image_encoder", ["frozen", "finetune"])
def test_validation_probabilities_equal_the_served_ones(
    dataset: dict[str, Path], tmp_path: Path, image_encoder: str
) -> None:
    config = TrainConfig(
        train=dataset["train"],
        val=dataset["val"],
        images_root=dataset["root"],
        task="count",
        ranks=f"0:{RANKS - 1}",
        backbone="tiny",
        num_context=4,
        epochs=2,
        batch_size=8,
        lr=3e-3,
        image_encoder=image_encoder,  # type: ignore[arg-type]
        device="cpu",
        output=tmp_path / "run",
    )
    trainer = Trainer(config, DistContext(), CPU)
    result = trainer.run()
    trained, labels = validation.predict_probabilities(
        trainer.model, trainer.val_loader, trainer.cached, CPU
    )
    store = ModelStore(tmp_path / "store")
    publish_trained(store, result.built, result.model, config, result.scale, result.best_metrics)

    # The served side: published artifacts, the server's decoding, tower and matching.
    snapshot = store.load_active(strict=True)
    task = snapshot.tasks["count"]
    backbone = snapshot.backbones[task.manifest.backbone]
    assert (backbone.manifest.weights.kind == "fine-tuned") == (image_encoder == "finetune")
    tower = VisionTower(backbone, resolve_placement("cpu", "fp32"))
    preprocess = Preprocessor(backbone.manifest.preprocess, ImageLimits(max_pixels=10**9))
    samples = read_samples(config.val, config.images_root, RANKS, strict=True)
    pixels = torch.stack([preprocess(s.path.read_bytes(), s.path.name) for s in samples])
    served = matching.rank_probabilities(
        tower.encode(pixels), task.prototypes, task.manifest.logit_scale
    )

    assert labels.tolist() == [s.rank for s in samples]
    assert trained.shape == (len(samples), RANKS)
    assert float(trained.max(axis=1).min()) < 0.999  # not saturated: a real comparison
    np.testing.assert_allclose(served.double().numpy(), trained, rtol=0, atol=1e-5)
