"""The trainable OrdinalCLIP model: image encoder, frozen text encoder, prompt learner."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from service.trainer.architectures import BuiltClip
from service.trainer.fit_config import TrainConfig
from service.trainer.methods import build_prompts
from service.trainer.text import TextEncoder


class OrdinalClip(nn.Module):
    """``forward(images or cached features)`` → (normalised image features, prototypes)."""

    def __init__(self, built: BuiltClip, config: TrainConfig, num_ranks: int) -> None:
        super().__init__()
        self.visual = built.model.visual
        self.text = TextEncoder(built.model)
        self.prompts = build_prompts(config, self.text, built.tokenizer(), num_ranks)
        # CLIP's temperature stays frozen, as in the reference recipe.
        self.register_buffer("logit_scale", built.model.logit_scale.detach().exp().clone())
        self.visual.requires_grad_(False)
        if config.image_encoder == "finetune":
            self._unfreeze_visual(config.finetune_last)

    def _unfreeze_visual(self, last_blocks: int) -> None:
        if last_blocks == 0:
            self.visual.requires_grad_(True)
            return
        blocks = self.visual.transformer.resblocks
        for block in blocks[len(blocks) - last_blocks :]:
            block.requires_grad_(True)
        for name in ("ln_post", "proj"):
            part = getattr(self.visual, name, None)
            if isinstance(part, nn.Module | nn.Parameter):
                part.requires_grad_(True)

    def prototypes(self) -> torch.Tensor:
        """The R rank prototypes, as published."""
        embeddings, eot = self.prompts()
        return F.normalize(self.text(embeddings, eot), dim=-1)

    def step_prototypes(self) -> torch.Tensor:
        """What a training step scores: the rank prototypes (NumCLIP's coarse stage: its bins')."""
        embeddings, eot = self.prompts.step_prompts()
        return F.normalize(self.text(embeddings, eot), dim=-1)

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual(pixels), dim=-1)

    def forward(
        self, inputs: torch.Tensor, features: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image = F.normalize(inputs, dim=-1) if features else self.encode_images(inputs)
        return image, self.step_prototypes()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]
