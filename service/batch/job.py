"""One batch job's settings, shared by the CLI and both runners (and shipped to Ray actors,
so it holds only plain, picklable values)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from service.batch.rows import Layout
from service.engine.engine_config import EngineConfig
from service.engine.post import ModelRef
from service.registry import ModelStore
from service.settings import Settings


class JobError(ValueError):
    """The job asks for something the registry does not have."""


@dataclass(frozen=True)
class BatchJob:
    store: Path
    out: Path
    tasks: tuple[str, ...] = ()  # empty: every task with an active version
    distribution: bool = False
    faces: bool = False
    resume: bool = False
    batch_size: int = 0  # 0: measured at start-up, as the server does
    workers: int = 2  # local: decoding threads; Ray: actors
    device: str = "auto"
    precision: str = "auto"
    runtime: str = "torch"  # the CLI's default is the server's: OCLIP_RUNTIME, else auto
    progress: bool = True

    def task_names(self) -> list[str]:
        names = list(self.tasks) or ModelStore(self.store).task_names()
        if not names:
            raise JobError(f"{self.store}: no task with an active version")
        return names

    def layout(self) -> Layout:
        """The columns, from the registry's manifests (no weights are loaded)."""
        store = ModelStore(self.store)
        served = store.task_names()
        models = {}
        for name in self.task_names():
            if name not in served:
                raise JobError(f"unknown task {name!r}; the store has: {', '.join(served)}")
            manifest = store.load_task(name).manifest
            models[name] = ModelRef(manifest.task, manifest.version, manifest.backbone)
        return Layout(models, self.distribution, self.faces)

    def engine_config(self, cpu_cores: int = 0) -> EngineConfig:
        """The offline engine (admission never refuses), on the job's device and precision."""
        return dataclasses.replace(
            EngineConfig.offline(self.precision),
            device=self.device,
            runtime=self.runtime,
            max_batch_size=self.batch_size,
            preprocess_workers=self.workers,
            cpu_cores=cpu_cores,
            # the server's setting (eager PyTorch needs the GIL between ops)
            gil_switch_interval_ms=Settings.model_fields["gil_switch_interval_ms"].default,
        )
