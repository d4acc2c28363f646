"""The engine: pre (admission, decoding) -> core -> post; see ARCHITECTURE.md.

- ``engine.py``: :class:`InferenceEngine`, which runs a request through the stages in order;
  ``factory.py`` builds it from the registry, ``lifecycle.py`` swaps it on a reload.
- ``pre.py`` (pre): room for a request's images before any decoding (or a 429), then
  bytes -> encoder inputs in a thread pool, through :mod:`service.imaging`.
- ``core/`` (core): the micro-batcher, the device, the towers on every runtime and the
  start-up selection of the fastest.
- ``post.py`` (post): features -> rank distributions -> typed answers.

Stages import only what comes before them in that list, never an API module. This module is
the engine's public API: what the API, batch scoring, the trainer and the benches may import.
"""

from service.engine.core.device import (
    DTYPES,
    configure_threads,
    cpu_features,
    cpu_signature,
    cpu_supports_bf16,
    usable_cores,
)
from service.engine.engine import InferenceEngine
from service.engine.engine_config import EngineConfig
from service.engine.factory import load_engine, load_task_backbone
from service.engine.post import (
    Answers,
    FaceResult,
    ImageResult,
    ModelRef,
    TaskPrediction,
    rank_logits,
    rank_probabilities,
    summarize,
)
from service.engine.pre import NamedImage

__all__ = [
    "DTYPES",
    "Answers",
    "EngineConfig",
    "FaceResult",
    "ImageResult",
    "InferenceEngine",
    "ModelRef",
    "NamedImage",
    "TaskPrediction",
    "configure_threads",
    "cpu_features",
    "cpu_signature",
    "cpu_supports_bf16",
    "load_engine",
    "load_task_backbone",
    "rank_logits",
    "rank_probabilities",
    "summarize",
    "usable_cores",
]
