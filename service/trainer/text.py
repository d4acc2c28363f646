"""CLIP's text tower, fed token *embeddings* instead of token ids (frozen)."""

from __future__ import annotations

import open_clip
import torch
from torch import nn


class TextEncoder(nn.Module):
    """Positional embedding → transformer (causal mask) → final LayerNorm → features at the
    EOT position → projection, exactly as ``open_clip.CLIP.encode_text`` after its lookup."""

    def __init__(self, clip: open_clip.CLIP) -> None:
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.requires_grad_(False)

    @property
    def context_length(self) -> int:
        return int(self.positional_embedding.shape[0])

    @property
    def width(self) -> int:
        return int(self.token_embedding.weight.shape[1])

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(tokens)

    def forward(self, embeddings: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """``embeddings``: N x L x W prompt embeddings; ``eot_index``: N positions. -> N x D."""
        cast = self.transformer.get_cast_dtype()
        x = embeddings.to(cast) + self.positional_embedding.to(cast)
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection
