"""Publishing a trained model: prototypes once from the prompts, then a new task version."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from service.registry import ModelStore, TaskManifest
from service.registry.manifest import WeightsSource
from service.trainer.architectures import BuiltClip, backbone_manifest
from service.trainer.data import RankScale
from service.trainer.face_crops import face_cropper
from service.trainer.fit_config import TrainConfig
from service.trainer.methods import METHOD_NAMES
from service.trainer.model import OrdinalClip


def publish_trained(
    store: ModelStore,
    built: BuiltClip,
    model: OrdinalClip,
    config: TrainConfig,
    scale: RankScale,
    metrics: dict[str, Any],
) -> TaskManifest:
    """Write the backbone (reused if frozen, new if fine-tuned) and an active task version."""
    with torch.no_grad():
        prototypes = model.prototypes().cpu()  # the text tower is not needed after this
    manifest = backbone_manifest(built)
    visual_state = model.visual.state_dict()
    if config.image_encoder == "finetune":
        digest = hashlib.sha256(
            b"".join(t.detach().float().cpu().numpy().tobytes() for t in visual_state.values())
        ).hexdigest()[:10]
        manifest = manifest.model_copy(
            update={
                "id": f"{built.architecture}-ft-{config.task}-{digest}",
                "weights": WeightsSource(kind="fine-tuned", note=f"from {manifest.id}"),
            }
        )
    stored = store.write_backbone(manifest, visual_state)
    crop = None
    if config.crop == "faces":  # the spec fit cut its crops with, for serving to repeat
        crop = face_cropper(config.crop_margin, manifest.preprocess.image_size).spec
    return store.publish_task(
        prototypes,
        task=config.task,
        backbone=stored.id,
        values=scale.values,
        labels=scale.labels,
        unit=config.unit,
        logit_scale=float(model.logit_scale),
        crop=crop,
        metrics=metrics,
        provenance={
            "producer": "service.trainer fit",
            "method": METHOD_NAMES[config.prompt],
            "config": config.model_dump(mode="json"),
        },
    )
