"""What the app holds between requests: the engine once loaded, and readiness."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from service import metrics
from service.config import Settings
from service.engine.device import configure_threads, resolve_placement
from service.engine.engine import InferenceEngine
from service.errors import NotReady, ServiceError
from service.registry import ModelStore

log = logging.getLogger(__name__)


def load_engine(settings: Settings) -> InferenceEngine:
    """Registry -> verified artifacts -> towers on the device -> warmed-up engine."""
    start = time.perf_counter()
    snapshot = ModelStore(settings.model_store).load_active()
    placement = resolve_placement(settings.device, settings.precision)
    configure_threads(settings.torch_threads)
    engine = InferenceEngine(snapshot, placement, settings)
    engine.warm_up(calibrate=settings.max_batch_size == 0)
    seconds = time.perf_counter() - start
    metrics.MODEL_LOAD_SECONDS.set(seconds)
    for backbone_id, runtime in engine.backbones.items():
        metrics.MAX_BATCH_SIZE.labels(backbone_id).set(runtime.batcher.max_batch_size)
    for name, task in engine.tasks.items():
        manifest = task.manifest
        metrics.MODEL_INFO.labels(
            name, manifest.version, manifest.backbone, str(placement.device), placement.precision
        ).set(1)
    log.info(
        "serving %s on %s/%s (loaded in %.2fs)",
        ", ".join(f"{n}@{t.manifest.version}" for n, t in engine.tasks.items()),
        placement.device,
        placement.precision,
        seconds,
    )
    return engine


@dataclass
class ServiceState:
    """Loads the engine in a background thread so liveness answers during start-up."""

    settings: Settings
    engine: InferenceEngine | None = None
    load_error: str | None = None
    _loader: threading.Thread | None = field(default=None, repr=False)

    def start_loading(self) -> None:
        self._loader = threading.Thread(target=self._load, name="registry-loader", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        try:
            self.engine = load_engine(self.settings)
            metrics.READY.set(1)
        except Exception as exc:  # any failure must surface in /readyz, not kill the thread
            message = exc.message if isinstance(exc, ServiceError) else repr(exc)
            self.load_error = message
            log.error("could not load the registry at %s: %s", self.settings.model_store, message)

    def ready_engine(self) -> InferenceEngine:
        if self.engine is None:
            raise NotReady(
                f"models failed to load: {self.load_error}"
                if self.load_error
                else "models are still loading",
                headers={"Retry-After": "5"},
            )
        return self.engine

    def stop(self) -> None:
        metrics.READY.set(0)
        if self._loader is not None:
            self._loader.join(timeout=60)
        if self.engine is not None:
            self.engine.stop()
