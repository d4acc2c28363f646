"""What the app holds between requests: the serving engine, its leases, readiness, draining.

Requests *lease* the engine they start on. A reload builds and warms a new engine beside
the old one, swaps it in atomically, and stops the old one only when its last lease ends,
so no request fails during a good swap.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from service import metrics
from service.config import Settings
from service.engine.device import configure_threads, resolve_placement
from service.engine.engine import InferenceEngine
from service.errors import NotReady, ReloadFailed, ServiceError, ShuttingDown
from service.registry import ModelStore

log = logging.getLogger(__name__)


def load_engine(settings: Settings) -> InferenceEngine:
    """Registry -> verified artifacts -> towers on the device -> warmed-up engine."""
    start = time.perf_counter()
    snapshot = ModelStore(settings.model_store).load_active()
    placement = resolve_placement(settings.device, settings.precision)
    configure_threads(settings.torch_threads, settings.gil_switch_interval_ms / 1000)
    engine = InferenceEngine(snapshot, placement, settings)
    try:
        engine.warm_up(calibrate=settings.max_batch_size == 0)
    except BaseException:
        engine.stop()
        raise
    seconds = time.perf_counter() - start
    metrics.MODEL_LOAD_SECONDS.set(seconds)
    log.info(
        "loaded %s on %s/%s in %.2fs",
        ", ".join(f"{n}@{t.manifest.version}" for n, t in engine.tasks.items()),
        placement.device,
        placement.precision,
        seconds,
    )
    return engine


def _publish_info(engine: InferenceEngine) -> None:
    metrics.MODEL_INFO.clear()
    for backbone_id, runtime in engine.backbones.items():
        metrics.MAX_BATCH_SIZE.labels(backbone_id).set(runtime.batcher.max_batch_size)
        metrics.MAX_QUEUED_IMAGES.labels(backbone_id).set(runtime.batcher.max_queued)
    placement = engine.placement
    for name, task in engine.tasks.items():
        manifest = task.manifest
        metrics.MODEL_INFO.labels(
            name, manifest.version, manifest.backbone, str(placement.device), placement.precision
        ).set(1)


class ServiceState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: InferenceEngine | None = None
        self.load_error: str | None = None
        self.draining = False
        self._leases: dict[int, int] = {}  # id(engine) -> requests using it
        self._retired: dict[int, InferenceEngine] = {}
        self._lock = threading.Lock()
        self._reload_lock = asyncio.Lock()
        self._loader: threading.Thread | None = None

    # -- start-up ------------------------------------------------------------------------
    def start_loading(self) -> None:
        self._loader = threading.Thread(target=self._initial_load, name="loader", daemon=True)
        self._loader.start()

    def _initial_load(self) -> None:
        try:
            self._swap_in(load_engine(self.settings))
        except Exception as exc:  # any failure must surface in /readyz, not kill the thread
            self.load_error = exc.message if isinstance(exc, ServiceError) else repr(exc)
            log.error(
                "could not load the registry at %s: %s", self.settings.model_store, self.load_error
            )

    @property
    def ready(self) -> bool:
        return self.engine is not None and not self.draining

    # -- leases --------------------------------------------------------------------------
    @contextmanager
    def lease(self) -> Iterator[InferenceEngine]:
        """The engine for one request; it stays alive until the request is done with it."""
        if self.draining:
            raise ShuttingDown("the service is shutting down", headers={"Retry-After": "1"})
        with self._lock:
            engine = self.engine
            if engine is None:
                raise NotReady(
                    f"models failed to load: {self.load_error}"
                    if self.load_error
                    else "models are still loading",
                    headers={"Retry-After": "5"},
                )
            self._leases[id(engine)] = self._leases.get(id(engine), 0) + 1
        try:
            yield engine
        finally:
            self._release(engine)

    def _release(self, engine: InferenceEngine) -> None:
        with self._lock:
            self._leases[id(engine)] -= 1
            done = self._leases[id(engine)] == 0 and id(engine) in self._retired
            if done:
                del self._retired[id(engine)], self._leases[id(engine)]
        if done:
            engine.stop()

    @property
    def active_requests(self) -> int:
        with self._lock:
            return sum(self._leases.values())

    def _swap_in(self, engine: InferenceEngine) -> None:
        with self._lock:
            old, self.engine = self.engine, engine
            self.load_error = None
            if old is not None and self._leases.get(id(old), 0) > 0:
                self._retired[id(old)] = old  # stopped by the release of its last lease
                old = None
            elif old is not None:
                self._leases.pop(id(old), None)
        if old is not None:
            old.stop()
        _publish_info(engine)
        metrics.READY.set(0 if self.draining else 1)

    # -- reload --------------------------------------------------------------------------
    async def reload(self) -> InferenceEngine:
        """Load, verify and warm the registry's active versions, then swap atomically.

        On failure the old engine keeps serving and :class:`ReloadFailed` says why.
        """
        if self._reload_lock.locked():
            raise ReloadFailed("a reload is already in progress")
        async with self._reload_lock:
            try:
                engine = await asyncio.to_thread(load_engine, self.settings)
            except Exception as exc:
                message = exc.message if isinstance(exc, ServiceError) else repr(exc)
                metrics.RELOADS.labels("failure").inc()
                log.error("reload rejected, still serving the previous models: %s", message)
                raise ReloadFailed(
                    f"reload rejected, previous models still served: {message}"
                ) from exc
            self._swap_in(engine)
            metrics.RELOADS.labels("success").inc()
            return engine

    # -- shutdown ------------------------------------------------------------------------
    def start_draining(self) -> None:
        self.draining = True
        metrics.READY.set(0)

    def stop(self) -> None:
        self.start_draining()
        if self._loader is not None:
            self._loader.join(timeout=60)
        with self._lock:
            engines = [e for e in (self.engine, *self._retired.values()) if e is not None]
        for engine in engines:
            engine.stop()
