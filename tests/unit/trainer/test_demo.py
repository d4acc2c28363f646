"""The demo producer and the cropped text path it shares with the zero-shot producer."""

from __future__ import annotations

from pathlib import Path

import torch

from service.engine.core.device import cpu_supports_bf16
from service.registry import ModelStore
from service.trainer.architectures import TINY, BuiltClip, build_clip
from service.trainer.demo import explain_existing, publish_demo
from service.trainer.tasks import BUILTIN_TASKS
from service.trainer.text import encode_text
from service.trainer.zeroshot import publish_zeroshot, template_prototypes


def full_context_prototypes(built: BuiltClip, templates: list[str], task: str) -> torch.Tensor:
    """The ensemble computed the plain way: open_clip's encode_text on all 77 columns."""
    spec = BUILTIN_TASKS[task]
    tokenizer = built.tokenizer()
    with torch.no_grad():
        per_rank = [
            torch.nn.functional.normalize(
                built.model.encode_text(tokenizer([t.format(word) for t in templates])), dim=-1
            ).mean(dim=0)
            for word in spec.rank_words
        ]
    return torch.nn.functional.normalize(torch.stack(per_rank), dim=-1)


def test_cropped_text_features_equal_the_full_context(tiny_clip: BuiltClip) -> None:
    tokens = tiny_clip.tokenizer()(["a photo of a 3 year old person.", "an ordinary photo."])
    seen: list[int] = []
    hook = tiny_clip.model.transformer.register_forward_hook(
        lambda _module, args, _out: seen.append(args[0].shape[1])
    )
    try:
        with torch.no_grad():
            cropped = encode_text(tiny_clip.model, tokens)
    finally:
        hook.remove()
    with torch.no_grad():
        full = tiny_clip.model.encode_text(tokens)
    assert seen == [int(tokens.argmax(dim=-1).max()) + 1] and seen[0] < tokens.shape[1]
    torch.testing.assert_close(cropped, full, atol=1e-5, rtol=1e-5)


def test_zeroshot_keeps_its_template_ensemble(tmp_path: Path, tiny_clip: BuiltClip) -> None:
    store = ModelStore(tmp_path)
    publish_zeroshot(store, tiny_clip, [BUILTIN_TASKS["age"]], "zeroshot")
    loaded = store.load_task("age")
    assert loaded.manifest.provenance["templates"] == BUILTIN_TASKS["age"].templates
    assert loaded.manifest.provenance["method"] == "zero-shot template ensemble"
    expected = full_context_prototypes(tiny_clip, BUILTIN_TASKS["age"].templates, "age")
    torch.testing.assert_close(loaded.prototypes, expected, atol=1e-5, rtol=1e-5)


def test_demo_publishes_every_builtin_task_with_one_prompt_per_rank(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    published = publish_demo(store, TINY, seed=0)
    assert [m.task for m in published] == list(BUILTIN_TASKS)
    snapshot = store.load_active()
    assert set(snapshot.tasks) == set(BUILTIN_TASKS) and set(snapshot.backbones) == {
        "tiny-random-s0"
    }
    for name, spec in BUILTIN_TASKS.items():
        task = snapshot.tasks[name]
        assert task.manifest.values == spec.values and task.manifest.labels == spec.labels
        assert task.prototypes.shape == (len(spec.values), 32)
        torch.testing.assert_close(task.prototypes.norm(dim=-1), torch.ones(len(spec.values)))
        provenance = task.manifest.provenance
        assert provenance["producer"] == "demo" and provenance["templates"] == spec.templates[:1]
        assert provenance["text_precision"] == ("bf16" if cpu_supports_bf16() else "fp32")
        assert provenance["weights"]["kind"] == "random"


def test_demo_prototypes_are_the_first_template_through_the_same_tower(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish_demo(store, TINY, seed=0)
    reference = build_clip(TINY, seed=0)
    for name, spec in BUILTIN_TASKS.items():
        fp32 = template_prototypes(reference, spec.first_template_only())
        demo = store.load_task(name).prototypes
        # equal in fp32, within bf16 rounding where the demo ran its text tower in bf16
        assert torch.nn.functional.cosine_similarity(demo, fp32, dim=-1).min() > 0.99
        rows = fp32 @ demo.T  # each rank is nearest its own prototype, not a neighbour's
        assert torch.equal(rows.argmax(dim=-1), torch.arange(len(spec.values)))


def test_a_demo_store_for_another_backbone_is_explained(tmp_path: Path, tiny_store: Path) -> None:
    store = ModelStore(tmp_path)
    publish_demo(store, TINY, seed=0)
    warning = explain_existing(store, "ViT-B-16")
    assert warning is not None
    for part in ("tiny-random-s0", "not ViT-B-16-random-s0", "model_store/demo-ViT-B-16"):
        assert part in warning
    assert explain_existing(store, TINY) is None
    # a registry the demo did not produce is the user's own: served without a word
    assert explain_existing(ModelStore(tiny_store), "ViT-B-16") is None


def test_another_seed_is_another_backbone(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    publish_demo(store, TINY, seed=0)
    warning = explain_existing(store, TINY, seed=1)
    assert warning is not None and "not tiny-random-s1" in warning
