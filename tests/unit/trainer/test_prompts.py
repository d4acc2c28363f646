"""Prompt learners, the text side and the loss, against the method page's formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from service.trainer.architectures import BuiltClip
from service.trainer.fit_config import TrainConfig
from service.trainer.losses import ordinal_clip_loss
from service.trainer.model import OrdinalClip
from service.trainer.prompts import (
    PlainPromptLearner,
    RankPromptLearner,
    build_layout,
    interpolation_weights,
)
from service.trainer.text import TextEncoder

SOS, EOS = 49406, 49407


@pytest.mark.parametrize("kind", ["linear", "inv_prop"])
@pytest.mark.parametrize(("ranks", "bases"), [(101, 3), (5, 2), (8, 8), (10, 4)])
def test_interpolation_weights_follow_the_method_page(kind: str, ranks: int, bases: int) -> None:
    weights = interpolation_weights(ranks, bases, kind)  # type: ignore[arg-type]
    positions = [k * (ranks - 1) / (bases - 1) if bases > 1 else 0.0 for k in range(bases)]
    for r in range(ranks):
        raw = []
        for q in positions:
            d = abs(r - q)
            raw.append(1 - d / (ranks - 1) if kind == "linear" else 1 / (d + 1e-5))
        expected = [w / sum(raw) for w in raw]
        assert weights[r].tolist() == pytest.approx(expected, rel=1e-5)


def test_interpolation_puts_base_ranks_at_their_positions() -> None:
    weights = interpolation_weights(101, 3, "inv_prop")
    assert weights[0, 0] > 0.999 and weights[50, 1] > 0.999 and weights[100, 2] > 0.999


@pytest.mark.parametrize(("position", "rank_start"), [("tail", 5), ("front", 1), ("middle", 3)])
def test_prompt_layout(tiny_clip: BuiltClip, position: str, rank_start: int) -> None:
    layout = build_layout(tiny_clip.tokenizer(), 4, 2, position)  # type: ignore[arg-type]
    tokens = layout.tokens
    assert tokens.shape == (77,)
    assert tokens[0] == SOS
    # SOS, 4 context + 2 rank tokens, ".", EOS, then padding zeros
    assert layout.eot_index == 1 + 4 + 2 + 1
    assert tokens[layout.eot_index] == EOS
    assert (tokens[layout.eot_index + 1 :] == 0).all()
    assert layout.rank_slots == [rank_start, rank_start + 1]
    assert sorted(layout.context_slots + layout.rank_slots) == list(range(1, 7))


def test_learners_produce_prompts_of_the_right_shape(tiny_clip: BuiltClip) -> None:
    text = TextEncoder(tiny_clip.model)
    tokenizer = tiny_clip.tokenizer()
    rank = RankPromptLearner(text, tokenizer, 7, num_base_ranks=3, num_context=4, tokens_per_rank=2)
    plain = PlainPromptLearner(text, tokenizer, 7, num_context=4)
    embeddings, eot = rank()
    assert embeddings.shape == (7, 77, 64) and eot.tolist() == [8] * 7
    assert rank.base.shape == (3, 2, 64)
    assert plain.ranks.shape == (7, 1, 64)
    fixed = text.embed(rank.layout.tokens[None])[0]
    assert torch.equal(embeddings[3, 0], fixed[0])  # SOS untouched
    assert torch.equal(embeddings[3, 8], fixed[8])  # EOS untouched
    assert torch.equal(embeddings[3, 1], rank.context[0])
    expected_rank = (rank.weights[3] @ rank.base.flatten(1)).reshape(2, 64)
    assert torch.allclose(embeddings[3, 5:7], expected_rank)


def test_context_initialised_from_a_sentence(tiny_clip: BuiltClip) -> None:
    text = TextEncoder(tiny_clip.model)
    learner = RankPromptLearner(
        text,
        tiny_clip.tokenizer(),
        5,
        context_init="the age of the person is",
        rank_words=["1", "2", "3"],
    )
    tokens = tiny_clip.tokenizer()("the age of the person is")[0][1:7]
    assert learner.context.shape == (6, 64)
    assert torch.equal(learner.context.detach(), text.embed(tokens))


def test_text_encoder_equals_open_clip_on_plain_tokens(tiny_clip: BuiltClip) -> None:
    text = TextEncoder(tiny_clip.model)
    tokens = tiny_clip.tokenizer()(["a photo of a 30 year old person.", "hello"])
    ours = text(text.embed(tokens), tokens.argmax(dim=-1))
    with torch.no_grad():
        reference = tiny_clip.model.encode_text(tokens)
    assert torch.allclose(ours, reference, atol=1e-5)


def test_gradients_reach_only_learned_parameters(tiny_clip: BuiltClip) -> None:
    config = TrainConfig(train="x", val="x", task="t", ranks="0:9", backbone="tiny", num_context=4)
    model = OrdinalClip(tiny_clip, config, 10)
    image, prototypes = model(torch.randn(6, 3, 32, 32))
    loss, _ = ordinal_clip_loss(
        model.logit_scale * image @ prototypes.T, torch.tensor([0, 1, 1, 5, 9, 9])
    )
    loss.backward()
    learned = {name for name, p in model.named_parameters() if p.grad is not None}
    assert learned == {"prompts.context", "prompts.base"}
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n in learned)
    assert not any(p.requires_grad for p in model.text.parameters())
    assert not any(p.requires_grad for p in model.visual.parameters())


def test_finetune_last_blocks_unfreezes_only_those(tiny_clip: BuiltClip) -> None:
    config = TrainConfig(
        train="x",
        val="x",
        task="t",
        ranks="0:9",
        backbone="tiny",
        image_encoder="finetune",
        finetune_last=1,
    )
    model = OrdinalClip(tiny_clip, config, 10)
    trainable = {n for n, p in model.visual.named_parameters() if p.requires_grad}
    assert any(n.startswith("transformer.resblocks.1.") for n in trainable)
    assert not any(n.startswith("transformer.resblocks.0.") for n in trainable)
    assert "proj" in trainable
    model.visual.requires_grad_(False)  # the session fixture's model is shared


def test_loss_matches_the_formulas() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=generator) * 3
    labels = torch.tensor([0, 2, 2, 4, 0, 2])
    loss, parts = ordinal_clip_loss(logits, labels, ce_weight=1.0, kl_weight=1.0)
    ce = -sum(F.log_softmax(logits[i], dim=0)[labels[i]] for i in range(6)) / 6
    present = sorted(set(labels.tolist()))
    kl_total = 0.0
    for r in present:
        target = torch.softmax(10.0 * (labels == r).float(), dim=0)
        log_p = F.log_softmax(logits[:, r], dim=0)
        kl_total += float(sum(target[i] * (math.log(target[i]) - log_p[i]) for i in range(6)))
    kl = kl_total / len(present)
    assert parts["ce"] == pytest.approx(float(ce), rel=1e-5)
    assert parts["kl"] == pytest.approx(kl, rel=1e-5)
    assert float(loss) == pytest.approx(float(ce) + kl, rel=1e-5)
    weighted, _ = ordinal_clip_loss(logits, labels, ce_weight=0.5, kl_weight=2.0)
    assert float(weighted) == pytest.approx(0.5 * float(ce) + 2.0 * kl, rel=1e-5)
