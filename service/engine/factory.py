"""The one place that builds engines: registry snapshot -> towers on the device ->
preprocessors -> batchers -> a started engine.

Like open_clip's ``create_model``: resolve the placement, construct, load the verified
weights, move to the device and precision. The server, the evaluator, the batch scorer
and the benchmarks all build through here; nothing else constructs towers.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from service import metrics
from service.engine.core.batcher import MicroBatcher
from service.engine.core.device import Placement, configure_threads, resolve_placement
from service.engine.core.runtimes.select import Search, select_encoder
from service.engine.engine import InferenceEngine, ServedBackbone, observe_batch
from service.engine.engine_config import EngineConfig
from service.engine.post import ServedTask
from service.engine.pre import Admission, PreStage
from service.imaging import Preprocessor
from service.imaging.faces import build_cropper
from service.registry import LoadedBackbone, LoadedTask, ModelStore, RegistrySnapshot

log = logging.getLogger(__name__)


def build_backbone(
    loaded: LoadedBackbone,
    placement: Placement,
    config: EngineConfig,
    tasks: Sequence[LoadedTask] = (),
) -> ServedBackbone:
    """A tower on the runtime, precision and layout measured fastest here (parity judged on
    ``tasks``), its eval transform, its (not yet started) batcher in that layout, and its
    face cropper."""
    search = Search(
        workers=config.encoder_workers,
        cores=config.cpu_cores,
        batch_size=config.max_batch_size,
        rounds=config.calibration_rounds,
        # a batch slower than half the target wait would break admission on its own
        max_batch_s=config.target_wait_s / 2,
    )
    tower = select_encoder(
        loaded,
        placement,
        config.runtime,
        tasks,
        search,
        precision=config.precision,
        allow_int8=config.allow_int8,
        int8_calibration_dir=config.int8_calibration_dir,
    )
    preprocess = Preprocessor(loaded.manifest.preprocess, config.limits)
    faces = build_cropper(config.faces, preprocess.image_size)
    assert tower.runtime_info.layout is not None  # select_encoder always measures one
    choice = tower.runtime_info.layout
    batcher = MicroBatcher(
        tower,
        name=loaded.manifest.id,
        max_batch_size=choice.layout.batch_size,
        max_batch_delay_s=config.max_batch_delay_ms / 1000.0,
        admission=Admission(
            target_wait_s=config.target_wait_s,
            max_queued=config.max_queued_images,
            img_s=choice.img_s,
        ),
        workers=choice.layout.workers,
        cores=choice.layout.cores,
        calibration_rounds=config.calibration_rounds,
        on_batch=functools.partial(observe_batch, loaded.manifest.id),
    )
    return ServedBackbone(loaded.manifest, tower, preprocess, batcher, faces)


def check_face_detector(tasks: dict[str, ServedTask], served: str) -> None:
    """Faces are detected once per image, by the served detector (``auto`` resolved), for
    every task; a task trained on another detector's crops still gets its margin and size,
    with this warning."""
    for name, task in tasks.items():
        crop = task.manifest.crop
        if crop is not None and crop.detector != served:
            log.warning(
                "task %s was trained on %s face crops; faces=true detects with %s",
                name,
                crop.detector,
                served,
            )


def build_engine(snapshot: RegistrySnapshot, config: EngineConfig) -> InferenceEngine:
    """A warmed-up, calibrated, running engine for ``snapshot``. If any part fails,
    whatever was already started is stopped before the error propagates."""
    placement = resolve_placement(config.device, config.precision)
    configure_threads(
        config.cpu_cores,
        None if config.gil_switch_interval_ms is None else config.gil_switch_interval_ms / 1000,
    )
    backbones = {
        backbone_id: build_backbone(
            loaded,
            placement,
            config,
            [t for t in snapshot.tasks.values() if t.manifest.backbone == backbone_id],
        )
        for backbone_id, loaded in snapshot.backbones.items()
    }
    tasks = {
        name: ServedTask(loaded, config.interval_level) for name, loaded in snapshot.tasks.items()
    }
    for backbone in list(backbones.values())[:1]:  # one detector config serves every tower
        check_face_detector(tasks, backbone.faces.detector.name)
    engine = InferenceEngine(
        backbones, tasks, placement, PreStage(config.preprocess_workers), snapshot.failed
    )
    with ExitStack() as cleanup:
        cleanup.callback(engine.stop)
        engine.start()
        cleanup.pop_all()
    return engine


def load_engine(store_root: Path, config: EngineConfig, strict: bool = True) -> InferenceEngine:
    """Registry folder -> verified artifacts -> a running engine, timed and logged. Not
    ``strict``: a task whose active version is broken fails alone (named in
    ``engine.failed_tasks``) and the others serve."""
    start = time.perf_counter()
    snapshot = ModelStore(store_root).load_active(strict=strict)
    for task, reason in snapshot.failed.items():
        log.error("task %s is not served: %s", task, reason)
    engine = build_engine(snapshot, config)
    seconds = time.perf_counter() - start
    metrics.MODEL_LOAD_SECONDS.set(seconds)
    log.info(
        "loaded %s on %s/%s in %.2fs",
        ", ".join(f"{n}@{t.manifest.version}" for n, t in engine.tasks.items()),
        engine.placement.device,
        engine.placement.precision,
        seconds,
    )
    return engine


def load_task_backbone(
    store_root: Path, task: str, config: EngineConfig, version: str | None = None
) -> tuple[ServedBackbone, ServedTask]:
    """One task version and its backbone, built exactly as the server builds them but with
    no worker threads: for offline evaluation and in-process benchmarks that drive the
    tower directly."""
    store = ModelStore(store_root)
    loaded = store.load_task(task, version)
    backbone = store.load_backbone(loaded.manifest.backbone)
    placement = resolve_placement(config.device, config.precision)
    served = build_backbone(backbone, placement, config, [loaded])
    return served, ServedTask(loaded, config.interval_level)
