"""Zero-shot prototypes: hand-written templates per rank, ensembled through the text tower."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from service.registry import ModelStore, TaskManifest
from service.trainer.architectures import BuiltClip, backbone_manifest
from service.trainer.tasks import TaskSpec
from service.trainer.text import encode_text

log = logging.getLogger(__name__)

TextEncode = Callable[[torch.Tensor], torch.Tensor]  # N x context token ids -> N x D features


@torch.inference_mode()
def template_prototypes(
    built: BuiltClip, spec: TaskSpec, encode: TextEncode | None = None, batch_size: int = 256
) -> torch.Tensor:
    """R x D: per rank, the mean of its normalised template embeddings, normalised again.
    ``encode`` defaults to the model's fp32 text tower (cropped after the EOT, exact)."""
    encode = encode or partial(encode_text, built.model)
    tokens = built.tokenizer()(
        [prompt for rank in range(len(spec.values)) for prompt in spec.prompts(rank)]
    )
    batches = [tokens[start : start + batch_size] for start in range(0, len(tokens), batch_size)]
    features = torch.cat([encode(batch).float() for batch in batches])
    features = torch.nn.functional.normalize(features, dim=-1)
    per_prompt = features.reshape(len(spec.values), len(spec.templates), -1)
    return torch.nn.functional.normalize(per_prompt.mean(dim=1), dim=-1)


def publish_zeroshot(
    store: ModelStore,
    built: BuiltClip,
    specs: list[TaskSpec],
    producer: str,
    encode: TextEncode | None = None,
    provenance: dict[str, Any] | None = None,
) -> list[TaskManifest]:
    """Write the backbone (once) and one new active version per task. ``provenance`` adds to
    (or overrides) the recorded method, templates and weights."""
    backbone = store.write_backbone(backbone_manifest(built), built.model.visual.state_dict())
    logit_scale = float(built.model.logit_scale.exp().item())
    published = []
    for spec in specs:
        prototypes = template_prototypes(built, spec, encode)
        recorded: dict[str, Any] = {
            "producer": producer,
            "method": "zero-shot template ensemble",
            "templates": spec.templates,
            "rank_words": spec.rank_words,
            "weights": built.weights.model_dump(exclude_none=True),
            **(provenance or {}),
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
            provenance=recorded,
        )
        published.append(manifest)
        log.info("published %s %s on %s", spec.name, manifest.version, backbone.id)
    return published
