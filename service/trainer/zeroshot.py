"""Zero-shot prototypes: hand-written templates per rank, ensembled through the text tower."""

from __future__ import annotations

import logging
from typing import Any

import torch
from tqdm import tqdm

from service.registry import ModelStore, TaskManifest
from service.trainer.architectures import BuiltClip, backbone_manifest
from service.trainer.tasks import TaskSpec

log = logging.getLogger(__name__)


@torch.inference_mode()
def template_prototypes(built: BuiltClip, spec: TaskSpec, batch_size: int = 64) -> torch.Tensor:
    """R x D: per rank, the mean of its normalised template embeddings, normalised again."""
    tokenizer = built.tokenizer()
    prompts = [prompt for rank in range(len(spec.values)) for prompt in spec.prompts(rank)]
    features = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=f"{spec.name} prompts", leave=False):
        tokens = tokenizer(prompts[start : start + batch_size])
        features.append(torch.nn.functional.normalize(built.model.encode_text(tokens), dim=-1))
    per_prompt = torch.cat(features).float().reshape(len(spec.values), len(spec.templates), -1)
    return torch.nn.functional.normalize(per_prompt.mean(dim=1), dim=-1)


def publish_zeroshot(
    store: ModelStore, built: BuiltClip, specs: list[TaskSpec], producer: str
) -> list[TaskManifest]:
    """Write the backbone (once) and one new active version per task."""
    backbone = store.write_backbone(backbone_manifest(built), built.model.visual.state_dict())
    logit_scale = float(built.model.logit_scale.exp().item())
    published = []
    for spec in specs:
        prototypes = template_prototypes(built, spec)
        provenance: dict[str, Any] = {
            "producer": producer,
            "method": "zero-shot template ensemble",
            "templates": spec.templates,
            "rank_words": spec.rank_words,
            "weights": built.weights.model_dump(exclude_none=True),
        }
        manifest = store.publish_task(
            prototypes,
            task=spec.name,
            backbone=backbone.id,
            values=spec.values,
            labels=spec.labels,
            unit=spec.unit,
            description=spec.description,
            logit_scale=logit_scale,
            provenance=provenance,
        )
        published.append(manifest)
        log.info("published %s %s on %s", spec.name, published[-1].version, backbone.id)
    return published
