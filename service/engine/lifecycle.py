"""Who serves right now: the current engine, its leases, readiness, reload and draining.

Requests *lease* the engine they start on. A reload builds and warms a new engine beside
the old one, swaps it in atomically, and stops the old one (in a thread of its own) only
when its last lease ends, so no request fails during a good swap.

Nothing here may be called from a signal handler: the lock below is not reentrant. A
handler sets a flag; the event loop then calls :meth:`EngineHost.start_draining`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from service import metrics
from service.engine.engine import InferenceEngine
from service.errors import NotReady, ReloadFailed, ServiceError, ShuttingDown, retry_after

log = logging.getLogger(__name__)

EngineLoader = Callable[[], InferenceEngine]


class EngineHost:
    def __init__(self, load: EngineLoader) -> None:
        self._load = load
        self.engine: InferenceEngine | None = None
        self.load_error: str | None = None
        self.drain_started: float | None = None  # time.monotonic() of SIGTERM
        self._leases: dict[int, int] = {}  # id(engine) -> requests using it
        self._retired: dict[int, InferenceEngine] = {}
        self._lock = threading.Lock()
        self._reload_lock = asyncio.Lock()
        self._loader: threading.Thread | None = None

    # -- start-up ------------------------------------------------------------------------
    def start_loading(self) -> None:
        self._loader = threading.Thread(target=self._initial_load, name="loader", daemon=True)
        self._loader.start()

    def wait_loaded(self, timeout: float | None = None) -> None:
        """Block until the initial load has finished (or failed)."""
        if self._loader is not None:
            self._loader.join(timeout)

    def _initial_load(self) -> None:
        try:
            self._swap_in(self._load())
        except Exception as exc:  # any failure must surface in /readyz, not kill the thread
            self.load_error = exc.message if isinstance(exc, ServiceError) else repr(exc)
            log.error("could not load the registry: %s", self.load_error)

    @property
    def draining(self) -> bool:
        return self.drain_started is not None

    @property
    def ready(self) -> bool:
        return self.engine is not None and not self.draining

    # -- leases --------------------------------------------------------------------------
    @contextmanager
    def lease(self, arrived: float | None = None) -> Iterator[InferenceEngine]:
        """The engine for one request, alive until the request is done with it.

        ``arrived`` (time.monotonic()) lets a request that arrived before SIGTERM finish
        on a draining server; one that arrived after is refused with ``shutting_down``.
        """
        self.check_accepting(arrived)
        with self._lock:
            engine = self.engine
            if engine is None:
                raise NotReady(
                    f"models failed to load: {self.load_error}"
                    if self.load_error
                    else "models are still loading",
                    headers=retry_after(5),
                )
            self._leases[id(engine)] = self._leases.get(id(engine), 0) + 1
        try:
            yield engine
        finally:
            self._release(engine)

    def check_accepting(self, arrived: float | None) -> None:
        """Refuse a request that arrived after SIGTERM (call it before reading its body)."""
        started = self.drain_started
        if started is not None and (arrived is None or arrived >= started):
            raise ShuttingDown()

    def _release(self, engine: InferenceEngine) -> None:
        with self._lock:
            self._leases[id(engine)] -= 1
            done = self._leases[id(engine)] == 0 and id(engine) in self._retired
            if done:
                del self._retired[id(engine)], self._leases[id(engine)]
        if done:
            _stop_in_background(engine)

    @property
    def active_leases(self) -> int:
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
        _publish(engine)  # only now: the gauges must never read an engine not served
        if old is not None:
            _stop_in_background(old)
        metrics.READY.set(0 if self.draining else 1)

    # -- reload --------------------------------------------------------------------------
    async def reload(self) -> InferenceEngine:
        """Load, verify and warm the registry's active versions, then swap atomically.

        On failure the old engine keeps serving and :class:`ReloadFailed` says why; the
        loader has already stopped whatever it had started.
        """
        if self._reload_lock.locked():
            raise ReloadFailed("a reload is already in progress")
        if self.draining or (self._loader is not None and self._loader.is_alive()):
            raise ReloadFailed("the service is starting or shutting down; not reloading now")
        async with self._reload_lock:
            try:
                engine = await asyncio.to_thread(self._load)
                served = set(self.engine.tasks if self.engine else ())
                lost = sorted(set(engine.failed_tasks) & served)
                if lost:  # a reload never takes a working task away
                    _stop_in_background(engine)
                    raise ReloadFailed(
                        "; ".join(f"{task}: {engine.failed_tasks[task]}" for task in lost)
                    )
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
        if self.drain_started is None:
            self.drain_started = time.monotonic()
        metrics.READY.set(0)

    def stop(self) -> None:
        """Stop every engine. Blocks: call it off the event loop."""
        self.start_draining()
        if self._loader is not None:
            self._loader.join(timeout=60)
        with self._lock:
            engines = [e for e in (self.engine, *self._retired.values()) if e is not None]
        for engine in engines:
            engine.stop()


def _stop_in_background(engine: InferenceEngine) -> None:
    """Joining worker threads takes up to a batch; never do it on the event loop."""
    threading.Thread(target=engine.stop, name="engine-stop", daemon=True).start()


def _publish(engine: InferenceEngine) -> None:
    """Point the served-model gauges at ``engine`` (and so release the previous one)."""
    for gauge in (
        metrics.MODEL_INFO,
        metrics.QUEUE_DEPTH,
        metrics.ADMISSION_WAIT_SECONDS,
        metrics.THROUGHPUT,
        metrics.MAX_BATCH_SIZE,
        metrics.MAX_QUEUED_IMAGES,
        metrics.RUNTIME_MEASURED,
    ):
        gauge.clear()  # a backbone no longer served must not be kept alive by its gauge
    metrics.TASK_CALIBRATED.clear()
    metrics.TASK_LOAD_FAILED.clear()
    for task in engine.failed_tasks:
        metrics.TASK_LOAD_FAILED.labels(task).set(1)
    for backbone_id, backbone in engine.backbones.items():
        admission = backbone.admission
        metrics.MAX_BATCH_SIZE.labels(backbone_id).set(backbone.batcher.max_batch_size)
        metrics.MAX_QUEUED_IMAGES.labels(backbone_id).set(admission.max_queued)
        metrics.QUEUE_DEPTH.labels(backbone_id).set_function(lambda a=admission: a.pending)
        metrics.ADMISSION_WAIT_SECONDS.labels(backbone_id).set_function(
            lambda a=admission: a.expected_wait_s
        )
        metrics.THROUGHPUT.labels(backbone_id).set_function(lambda a=admission: a.throughput)
        info = backbone.tower.runtime_info
        for label, rate in {**info.screened_img_s, **info.measured_img_s}.items():
            name, _, precision = label.partition("/")
            metrics.RUNTIME_MEASURED.labels(backbone_id, name, precision).set(rate)
    for name, task in engine.tasks.items():
        manifest = task.manifest
        tower = engine.backbones[manifest.backbone].tower
        info = tower.runtime_info
        metrics.MODEL_INFO.labels(
            name,
            manifest.version,
            manifest.backbone,
            str(tower.placement.device),
            info.precision,
            info.name,
            str(info.layout.layout) if info.layout else "",
        ).set(1)
        metrics.TASK_CALIBRATED.labels(name).set(int(manifest.calibration is not None))
