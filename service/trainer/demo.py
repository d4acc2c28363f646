"""The random-weight demo registry: the real architecture and pipeline, untrained, built fast.

Random text features carry no meaning a template ensemble could average out, so the demo
encodes one prompt per rank (each task's first template), cropped after its EOT, one batch
per task, in bf16 where the CPU has native bf16. The zero-shot producer for real weights
(``zeroshot.publish_zeroshot``: every template, fp32) keeps its ensemble; the manifest's
provenance says which way a task was built.
"""

from __future__ import annotations

import logging

from service.engine import DTYPES, cpu_supports_bf16
from service.registry import ModelStore, TaskManifest
from service.trainer.architectures import TINY, build_clip, random_weights, weights_id
from service.trainer.tasks import BUILTIN_TASKS, TaskSpec
from service.trainer.text import TextEncoder, crops_exactly
from service.trainer.zeroshot import TextEncode, publish_zeroshot

log = logging.getLogger(__name__)

PRODUCER = "demo"
METHOD = (
    "demo: one prompt per rank (each task's first template) through the random text tower; "
    "a template ensemble means nothing without trained weights"
)


def demo_specs() -> list[TaskSpec]:
    return [spec.first_template_only() for spec in BUILTIN_TASKS.values()]


def text_precision() -> str:
    return "bf16" if cpu_supports_bf16() else "fp32"


def publish_demo(store: ModelStore, architecture: str = TINY, seed: int = 0) -> list[TaskManifest]:
    """Build ``architecture`` with random weights and publish age, aesthetics and decade."""
    built = build_clip(architecture, pretrained=None, seed=seed)
    precision = text_precision()
    encode: TextEncode | None = None
    if crops_exactly(built.model):
        # Casts the text modules of this throw-away model in place; the vision tower and
        # logit scale, which the registry keeps, are not part of the text encoder.
        encode = TextEncoder(built.model).to(DTYPES[precision]).encode_tokens
    else:
        precision = "fp32"  # the model's own encode_text, as built
    provenance = {"method": METHOD, "text_precision": precision}
    return publish_zeroshot(store, built, demo_specs(), PRODUCER, encode, provenance)


def demo_backbones(store: ModelStore) -> set[str]:
    """Backbones the store's active tasks use, where the demo produced those tasks."""
    manifests = [store.load_task(task).manifest for task in store.task_names()]
    return {m.backbone for m in manifests if m.provenance.get("producer") == PRODUCER}


def explain_existing(store: ModelStore, architecture: str, seed: int = 0) -> str | None:
    """What to tell a user whose non-empty store was built by the demo for another backbone
    (the store is served as it is); None when it holds this demo or a registry of its own."""
    wanted = weights_id(architecture, random_weights(seed))
    others = demo_backbones(store) - {wanted}
    if not others:
        return None
    return (
        f"{store.root} already holds the demo registry for {', '.join(sorted(others))}, "
        f"not {wanted}: serving it as it is. For the {architecture} demo, use a store of its "
        f"own (make serve DEMO_BACKBONE={architecture} without STORE picks "
        f"model_store/demo-{architecture}) or delete {store.root} first."
    )
