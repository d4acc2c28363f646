"""Building CLIP models for producers: open_clip names, pretrained tags, and a tiny test model."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import open_clip
import torch
from open_clip.transform import PreprocessCfg

from service.registry.manifest import BackboneManifest, Preprocess, WeightsSource
from service.registry.store import utc_now

# A deliberately small CLIP for tests and the quick demo: real open_clip code, tiny widths.
# The text side keeps CLIP's vocabulary and context so the bundled BPE tokenizer fits.
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TINY = "tiny"


@dataclass
class BuiltClip:
    model: open_clip.CLIP
    architecture: str
    config: dict[str, Any]
    weights: WeightsSource
    preprocess: PreprocessCfg

    def tokenizer(self) -> Any:
        return open_clip.get_tokenizer(
            "ViT-B-16" if self.architecture == TINY else self.architecture
        )


def build_clip(architecture: str, pretrained: str | None = None, seed: int = 0) -> BuiltClip:
    """A full CLIP (both towers). ``pretrained`` is an open_clip tag or a local checkpoint path;
    without one the weights are random (seeded), which is all that works offline."""
    torch.manual_seed(seed)
    if architecture == TINY:
        if pretrained:
            raise ValueError("the tiny test architecture has no pretrained weights")
        model = open_clip.CLIP(**TINY_CONFIG)
        config = TINY_CONFIG
        preprocess = PreprocessCfg(size=TINY_CONFIG["vision_cfg"]["image_size"])
    else:
        config = open_clip.get_model_config(architecture)
        if config is None:
            raise ValueError(
                f"unknown open_clip architecture {architecture!r}; "
                f"known: {', '.join(open_clip.list_models())}"
            )
        model = open_clip.create_model(architecture, pretrained=pretrained)
        preprocess = PreprocessCfg(**model.visual.preprocess_cfg)
    weights = (
        WeightsSource(kind="pretrained", tag=pretrained)
        if pretrained
        else WeightsSource(kind="random", seed=seed, note="untrained: predictions are meaningless")
    )
    return BuiltClip(model.eval(), architecture, config, weights, preprocess)


def backbone_id(built: BuiltClip) -> str:
    source = (
        built.weights.tag if built.weights.kind == "pretrained" else f"random-s{built.weights.seed}"
    )
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{built.architecture}-{source}")


def backbone_manifest(built: BuiltClip) -> BackboneManifest:
    cfg = built.preprocess
    size = cfg.size if isinstance(cfg.size, int) else int(cfg.size[0])
    vision_cfg = built.config["vision_cfg"]
    return BackboneManifest(
        id=backbone_id(built),
        architecture=built.architecture,
        embed_dim=built.config["embed_dim"],
        vision_cfg=dict(vision_cfg) if isinstance(vision_cfg, dict) else asdict(vision_cfg),
        quick_gelu=bool(built.config.get("quick_gelu", False)),
        weights=built.weights,
        preprocess=Preprocess(
            image_size=size,
            mean=tuple(cfg.mean),
            std=tuple(cfg.std),
            interpolation=cfg.interpolation,
            resize_mode=cfg.resize_mode,
        ),
        files={},
        created_at=utc_now(),
    )
