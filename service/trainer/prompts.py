"""Prompt learners: OrdinalCLIP's interpolated rank prompts and the CoOp baseline.

A prompt for rank r is ``[SOS] c_1 … c_M  e_r  "." [EOS] [pad …]`` (rank tokens at the
tail; ``front`` and ``middle`` move them). Context embeddings c are shared by all ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from service.trainer.text import TextEncoder

Interpolation = Literal["linear", "inv_prop"]
RankPosition = Literal["tail", "front", "middle"]
PLACEHOLDER = "X"


def interpolation_weights(num_ranks: int, num_base_ranks: int, kind: Interpolation) -> torch.Tensor:
    """R x K weights of the base rank embeddings, as the method page defines them."""
    if not 1 <= num_base_ranks <= num_ranks:
        raise ValueError(f"need 1 <= num_base_ranks ({num_base_ranks}) <= num_ranks ({num_ranks})")
    ranks = torch.arange(num_ranks, dtype=torch.float64)[:, None]
    if num_base_ranks == 1:  # as the reference: one base in the middle, every weight 1
        base_positions = torch.full((1, 1), (num_ranks - 1) / 2, dtype=torch.float64)
    else:
        base_positions = torch.linspace(0, num_ranks - 1, num_base_ranks, dtype=torch.float64)
        base_positions = base_positions[None]
    distance = (ranks - base_positions).abs()
    if kind == "linear":
        weights = 1 - distance / max(num_ranks - 1, 1)
    elif kind == "inv_prop":
        weights = 1 / (distance + 1e-5)
    else:
        raise ValueError(f"interpolation {kind!r} is not 'linear' or 'inv_prop'")
    return (weights / weights.sum(dim=1, keepdim=True)).float()


@dataclass(frozen=True)
class PromptLayout:
    """Where the learned tokens go inside the tokenised template."""

    tokens: torch.Tensor  # L token ids of "[SOS] X…X . [EOS] pad"
    context_slots: list[int]
    rank_slots: list[int]
    eot_index: int


def build_layout(
    tokenizer: object, num_context: int, tokens_per_rank: int, position: RankPosition
) -> PromptLayout:
    """Tokenise a placeholder sentence and record which positions are learned."""
    context = [PLACEHOLDER] * num_context
    rank = [PLACEHOLDER] * tokens_per_rank
    if position == "tail":
        words = context + rank
        rank_start = 1 + num_context
    elif position == "front":
        words = rank + context
        rank_start = 1
    elif position == "middle":
        half = num_context // 2
        words = context[:half] + rank + context[half:]
        rank_start = 1 + half
    else:
        raise ValueError(f"rank position {position!r} is not tail, front or middle")
    tokens = tokenizer(" ".join(words) + ".")[0]  # type: ignore[operator]
    rank_slots = list(range(rank_start, rank_start + tokens_per_rank))
    learned = range(1, 1 + num_context + tokens_per_rank)
    context_slots = [i for i in learned if i not in rank_slots]
    return PromptLayout(tokens, context_slots, rank_slots, int(tokens.argmax()))


class PromptLearner(nn.Module):
    """Shared machinery: fixed token embeddings with learned context and rank slots."""

    def __init__(
        self,
        text: TextEncoder,
        tokenizer: object,
        num_ranks: int,
        num_context: int = 10,
        tokens_per_rank: int = 1,
        position: RankPosition = "tail",
        context_init: str | None = None,
    ) -> None:
        super().__init__()
        if context_init:
            num_context = len(_word_tokens(tokenizer, context_init))
        self.num_ranks = num_ranks
        self.tokens_per_rank = tokens_per_rank
        self.layout = build_layout(tokenizer, num_context, tokens_per_rank, position)
        with torch.no_grad():
            fixed = text.embed(self.layout.tokens[None]).detach().clone()
        self.register_buffer("fixed_embeddings", fixed, persistent=False)  # 1 x L x W
        if context_init:
            with torch.no_grad():
                init = text.embed(_word_tokens(tokenizer, context_init)).detach().clone()
        else:
            init = torch.randn(num_context, text.width) * 0.02
        self.context = nn.Parameter(init)

    def rank_embeddings(self) -> torch.Tensor:  # R x T x W
        raise NotImplementedError

    def forward(self, ranks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt embeddings C x L x W and EOT positions C, for the R rank embeddings
        (or the C given ``ranks``, C x T x W: NumCLIP's coarse bins)."""
        ranks = self.rank_embeddings() if ranks is None else ranks
        count = len(ranks)
        prompts = self.fixed_embeddings.expand(count, -1, -1).clone()
        prompts[:, self.layout.context_slots] = self.context[None].expand(count, -1, -1)
        prompts[:, self.layout.rank_slots] = ranks
        eot = torch.full((count,), self.layout.eot_index, device=prompts.device)
        return prompts, eot

    def step_prompts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompts a training step scores: the ranks' (NumCLIP's coarse stage: its bins)."""
        return self()


class RankPromptLearner(PromptLearner):
    """OrdinalCLIP: K base rank embeddings, interpolated into R ordered rank embeddings."""

    def __init__(
        self,
        text: TextEncoder,
        tokenizer: object,
        num_ranks: int,
        num_base_ranks: int = 3,
        interpolation: Interpolation = "linear",
        rank_words: list[str] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(text, tokenizer, num_ranks, **kwargs)  # type: ignore[arg-type]
        weights = interpolation_weights(num_ranks, num_base_ranks, interpolation)
        self.register_buffer("weights", weights, persistent=False)
        self.base = nn.Parameter(
            rank_init(text, tokenizer, rank_words, num_base_ranks, self.tokens_per_rank)
        )

    def rank_embeddings(self) -> torch.Tensor:
        base = self.base.flatten(1)  # K x (T*W)
        return (self.weights @ base).reshape(self.num_ranks, self.tokens_per_rank, -1)


class PlainPromptLearner(PromptLearner):
    """CoOp baseline: one free embedding per rank."""

    def __init__(
        self,
        text: TextEncoder,
        tokenizer: object,
        num_ranks: int,
        rank_words: list[str] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(text, tokenizer, num_ranks, **kwargs)  # type: ignore[arg-type]
        self.ranks = nn.Parameter(
            rank_init(text, tokenizer, rank_words, num_ranks, self.tokens_per_rank)
        )

    def rank_embeddings(self) -> torch.Tensor:
        return self.ranks


def _word_tokens(tokenizer: object, sentence: str) -> torch.Tensor:
    tokens = tokenizer(sentence)[0]  # type: ignore[operator]
    return tokens[1 : int(tokens.argmax())]  # between SOS and EOS


def rank_init(
    text: TextEncoder, tokenizer: object, words: list[str] | None, count: int, per_rank: int
) -> torch.Tensor:
    """count x T x W: the first token(s) of evenly picked rank words, or small noise."""
    if not words:
        return torch.randn(count, per_rank, text.width) * 0.02
    picks = torch.linspace(0, len(words) - 1, count).round().long().tolist()
    rows = []
    with torch.no_grad():
        for index in picks:
            tokens = _word_tokens(tokenizer, words[index])[:per_rank]
            embedded = text.embed(tokens)
            if len(embedded) < per_rank:  # pad short words with their last token
                embedded = torch.cat([embedded, embedded[-1:].expand(per_rank - len(embedded), -1)])
            rows.append(embedded)
    return torch.stack(rows).detach().clone()
