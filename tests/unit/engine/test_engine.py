"""The inference engine on a tiny random model: shared encodings, precision, reference path."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from open_clip.transform import image_transform

from service.engine import InferenceEngine, NamedImage
from service.engine.core.device import Placement, resolve_placement
from service.engine.engine_config import EngineConfig
from service.engine.factory import build_engine
from service.engine.post import ImageResult
from service.errors import ArtifactError
from service.registry import ModelStore
from service.trainer.architectures import BuiltClip
from service.trainer.tasks import BUILTIN_TASKS
from service.trainer.zeroshot import template_prototypes
from tests import images


def make_engine(store: Path, precision: str) -> InferenceEngine:
    snapshot = ModelStore(store).load_active()
    return build_engine(snapshot, EngineConfig(device="cpu", precision=precision))


def predict(engine: InferenceEngine, pictures: list[NamedImage], tasks: list[str]) -> list[dict]:
    async def run() -> list[ImageResult]:
        try:
            return (await engine.predict(pictures, tasks)).images
        finally:
            engine.stop()

    return [result.predictions for result in asyncio.run(run())]


PICTURES = [NamedImage(f"{i}.png", images.png(seed=i)) for i in range(3)]


def test_tasks_sharing_a_backbone_share_one_encoding_per_image(tiny_store: Path) -> None:
    engine = make_engine(tiny_store, "fp32")
    tower = engine.backbones["tiny-random-s0"].tower
    before = tower.images_encoded  # warm-up and calibration rows
    results = predict(engine, PICTURES, ["age", "aesthetics", "decade"])
    assert tower.images_encoded - before == len(PICTURES)
    assert all(set(r) == {"age", "aesthetics", "decade"} for r in results)


def test_engine_matches_a_direct_open_clip_computation(
    tiny_store: Path, tiny_clip: BuiltClip
) -> None:
    """Registry round trip + vision-only tower + matching == the full CLIP model, in fp32."""
    engine = make_engine(tiny_store, "fp32")
    served = predict(engine, PICTURES, ["age"])
    transform = image_transform(32, is_train=False)
    prototypes = template_prototypes(tiny_clip, BUILTIN_TASKS["age"])
    scale = tiny_clip.model.logit_scale.exp()
    with torch.no_grad():
        for picture, result in zip(PICTURES, served, strict=True):
            pixels = transform(images.Image.open(images.io.BytesIO(picture.data)).convert("RGB"))
            feature = torch.nn.functional.normalize(
                tiny_clip.model.encode_image(pixels[None]), dim=-1
            )
            probabilities = (
                torch.softmax(scale * feature @ prototypes.T, dim=-1)[0].double().numpy()
            )
            np.testing.assert_allclose(result["age"].probabilities, probabilities, atol=1e-5)
            assert result["age"].expected == pytest.approx(
                float(probabilities @ np.arange(101.0)), abs=1e-3
            )


def test_bf16_and_fp32_agree(tiny_store: Path) -> None:
    fp32 = predict(make_engine(tiny_store, "fp32"), PICTURES, ["age", "decade"])
    bf16 = predict(make_engine(tiny_store, "bf16"), PICTURES, ["age", "decade"])
    for full, half in zip(fp32, bf16, strict=True):
        for task, value_range in (("age", 100.0), ("decade", 40.0)):
            total_variation = (
                0.5 * np.abs(full[task].probabilities - half[task].probabilities).sum()
            )
            assert total_variation < 0.05
            assert abs(full[task].expected - half[task].expected) < 0.02 * value_range


def test_placement_defaults() -> None:
    assert resolve_placement("cpu", "fp32") == Placement(torch.device("cpu"), "fp32")
    auto = resolve_placement("auto", "auto")
    if not torch.cuda.is_available():
        assert auto.device.type == "cpu" and auto.precision in ("bf16", "fp32")
    with pytest.raises(ValueError, match="precision"):
        resolve_placement("cpu", "int4")


def test_answers_are_complete(tiny_store: Path) -> None:
    (result,) = predict(make_engine(tiny_store, "fp32"), PICTURES[:1], ["decade"])
    answer = result["decade"]
    assert answer.model.task == "decade" and answer.model.version == "v1"
    assert answer.model.backbone == "tiny-random-s0"
    assert answer.labels is not None and len(answer.labels) == len(answer.values)
    assert answer.interval.level == 0.9
    assert answer.interval.low <= answer.median <= answer.interval.high
    assert answer.probabilities.sum() == pytest.approx(1.0)


def test_a_failed_build_leaves_no_thread_behind(tiny_store: Path) -> None:
    """A second backbone whose weights do not fit fails the build; the first backbone's
    batcher threads must not be left running (they used to start in the constructor)."""
    snapshot = ModelStore(tiny_store).load_active()
    (good,) = snapshot.backbones.values()
    broken_weights = dict(list(good.state_dict.items())[1:])
    broken = dataclasses.replace(good, state_dict=broken_weights)
    two = dataclasses.replace(snapshot, backbones={"a-good": good, "b-broken": broken})

    def batcher_threads() -> int:
        return sum(t.name.startswith("batcher-") for t in threading.enumerate())

    before = batcher_threads()
    with pytest.raises(ArtifactError, match="do not fit"):
        build_engine(two, EngineConfig(device="cpu", precision="fp32", max_batch_size=1))
    assert batcher_threads() == before
