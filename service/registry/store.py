"""The on-disk registry: reading, verifying and writing backbones and task versions.

Layout::

    backbones/<id>/{manifest.json, visual.safetensors}
    tasks/<task>/versions/<version>/{manifest.json, prototypes.safetensors}
    tasks/<task>/ACTIVE            # the served version's name, replaced atomically

Served artifacts are safetensors + JSON only: nothing here unpickles.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from service.errors import ArtifactError
from service.registry.files import (
    MANIFEST,
    atomic_dir,
    atomic_text,
    load_verified,
    read_manifest,
    require_finite,
    save_tensors,
    sha256_of,
    staging_dir,
    utc_now,
    write_json,
)
from service.registry.manifest import BackboneManifest, TaskManifest

__all__ = ["LoadedBackbone", "LoadedTask", "ModelStore", "RegistrySnapshot", "utc_now"]

VISUAL_FILE = "visual.safetensors"
PROTOTYPES_FILE = "prototypes.safetensors"
PROTOTYPES_KEY = "prototypes"
ACTIVE_POINTER = "ACTIVE"


@dataclass(frozen=True)
class LoadedBackbone:
    manifest: BackboneManifest
    state_dict: dict[str, torch.Tensor]
    folder: Path | None = None  # where runtime exports are cached (None: a temporary folder)

    @property
    def weights_sha256(self) -> str:
        """The weights file's checksum; for a backbone built in memory, one of its tensors."""
        listed = self.manifest.files.get(VISUAL_FILE)
        if listed:
            return listed
        digest = hashlib.sha256()
        for key in sorted(self.state_dict):
            digest.update(key.encode())
            digest.update(self.state_dict[key].detach().float().contiguous().numpy().tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class LoadedTask:
    manifest: TaskManifest
    prototypes: torch.Tensor  # float32, R x D, rows L2-normalised


@dataclass(frozen=True)
class RegistrySnapshot:
    """Everything the server needs, loaded and verified, keyed by id / task name.

    ``failed`` maps each task that could not be loaded (lenient loading only) to why.
    """

    backbones: dict[str, LoadedBackbone]
    tasks: dict[str, LoadedTask]
    failed: dict[str, str] = field(default_factory=dict)


class ModelStore:
    """A registry folder. Reads verify checksums; writes are atomic renames."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------
    def backbone_dir(self, backbone_id: str) -> Path:
        return self.root / "backbones" / backbone_id

    def task_dir(self, task: str) -> Path:
        return self.root / "tasks" / task

    def version_dir(self, task: str, version: str) -> Path:
        return self.task_dir(task) / "versions" / version

    # -- reading -------------------------------------------------------------------------
    def task_names(self) -> list[str]:
        tasks = self.root / "tasks"
        if not tasks.is_dir():
            return []
        return sorted(p.name for p in tasks.iterdir() if (p / ACTIVE_POINTER).is_file())

    def active_version(self, task: str) -> str:
        pointer = self.task_dir(task) / ACTIVE_POINTER
        if not pointer.is_file():
            raise ArtifactError(f"task {task!r} has no active version ({pointer} missing)")
        return pointer.read_text().strip()

    def versions(self, task: str) -> list[str]:
        folder = self.task_dir(task) / "versions"
        if not folder.is_dir():
            return []
        return sorted(
            (p.name for p in folder.iterdir() if not p.name.startswith(".")), key=_natural
        )

    def load_backbone(self, backbone_id: str) -> LoadedBackbone:
        folder = self.backbone_dir(backbone_id)
        manifest = read_manifest(folder, BackboneManifest)
        if manifest.id != backbone_id:
            raise ArtifactError(f"{folder / MANIFEST} names backbone {manifest.id!r}")
        state_dict = load_verified(folder, manifest.files, VISUAL_FILE)
        return LoadedBackbone(manifest, state_dict, folder)

    def load_task(self, task: str, version: str | None = None) -> LoadedTask:
        version = version or self.active_version(task)
        folder = self.version_dir(task, version)
        manifest = read_manifest(folder, TaskManifest)
        if (manifest.task, manifest.version) != (task, version):
            raise ArtifactError(f"{folder / MANIFEST} describes {manifest.task}/{manifest.version}")
        tensors = load_verified(folder, manifest.files, PROTOTYPES_FILE)
        prototypes = tensors.get(PROTOTYPES_KEY)
        if prototypes is None or prototypes.ndim != 2:
            raise ArtifactError(f"{folder / PROTOTYPES_FILE} has no 2-D '{PROTOTYPES_KEY}' tensor")
        if prototypes.shape[0] != manifest.num_ranks:
            raise ArtifactError(
                f"{folder / PROTOTYPES_FILE} has {prototypes.shape[0]} prototypes "
                f"for {manifest.num_ranks} ranks"
            )
        return LoadedTask(manifest, prototypes.float())

    def load_active(self, *, strict: bool = True) -> RegistrySnapshot:
        """Load and verify every task's active version and the backbones they use.

        ``strict``: the first broken task or backbone raises, and nothing is served.
        Otherwise a broken task fails alone: it is left out and named in
        ``RegistrySnapshot.failed`` with the reason, and the others load. With no task
        left to serve, both modes raise.
        """
        tasks: dict[str, LoadedTask] = {}
        failed: dict[str, str] = {}
        backbones: dict[str, LoadedBackbone] = {}
        broken: dict[str, str] = {}  # backbone id -> why, so a bad backbone is read once
        for name in self.task_names():
            try:
                loaded = self.load_task(name)
                self._attach_backbone(loaded, backbones, broken)
            except (ArtifactError, OSError) as exc:
                if strict:
                    raise
                failed[name] = str(exc)
                continue
            tasks[name] = loaded
        if not tasks:
            reasons = "".join(f"; {task}: {why}" for task, why in failed.items())
            raise ArtifactError(
                f"no tasks with a loadable active version under {self.root / 'tasks'}{reasons}"
            )
        return RegistrySnapshot(backbones, tasks, failed)

    def _attach_backbone(
        self,
        loaded: LoadedTask,
        backbones: dict[str, LoadedBackbone],
        broken: dict[str, str],
    ) -> None:
        """Load ``loaded``'s backbone once into ``backbones`` and check the dimensions."""
        backbone_id = loaded.manifest.backbone
        if backbone_id in broken:
            raise ArtifactError(broken[backbone_id])
        if backbone_id not in backbones:
            try:
                backbones[backbone_id] = self.load_backbone(backbone_id)
            except (ArtifactError, OSError) as exc:
                broken[backbone_id] = f"backbone {backbone_id}: {exc}"
                raise
        dim = backbones[backbone_id].manifest.embed_dim
        if loaded.prototypes.shape[1] != dim:
            raise ArtifactError(
                f"task {loaded.manifest.task} prototypes are {loaded.prototypes.shape[1]}-d, "
                f"backbone {backbone_id} embeds to {dim}-d"
            )

    # -- writing -------------------------------------------------------------------------
    def write_backbone(
        self, manifest: BackboneManifest, state_dict: dict[str, torch.Tensor]
    ) -> BackboneManifest:
        """Write a backbone and return the manifest it is stored under.

        An id names immutable weights. When ``manifest.id`` already holds these exact
        weights (same sha256) it is reused. When it holds other weights (a checkpoint
        changed in place, another torch's random init) these go under a new id,
        ``<id>-<first 12 hex digits of their sha256>``, and never over the old ones:
        callers must use the returned manifest's id.
        """
        tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        require_finite(tensors, self.backbone_dir(manifest.id) / VISUAL_FILE)
        with staging_dir(self.root / "backbones", manifest.id) as staging:
            save_tensors(tensors, staging / VISUAL_FILE)
            digest = sha256_of(staging / VISUAL_FILE)
            for backbone_id in (manifest.id, f"{manifest.id}-{digest[:12]}"):
                target = self.backbone_dir(backbone_id)
                if not (target / MANIFEST).is_file():
                    final = manifest.model_copy(
                        update={"id": backbone_id, "files": {VISUAL_FILE: digest}}
                    )
                    write_json(staging / MANIFEST, final)
                    os.rename(staging, target)
                    return final
                existing = read_manifest(target, BackboneManifest)
                if existing.files.get(VISUAL_FILE) == digest:
                    return existing
        raise ArtifactError(
            f"backbones {manifest.id} and {manifest.id}-{digest[:12]} both hold other weights"
        )

    def write_task_version(
        self, manifest: TaskManifest, prototypes: torch.Tensor, *, activate: bool = True
    ) -> TaskManifest:
        """Write a new version folder (version taken from the manifest, or the next ``vN``)."""
        if prototypes.shape != (manifest.num_ranks, prototypes.shape[1]):
            raise ValueError(f"prototypes {tuple(prototypes.shape)} for {manifest.num_ranks} ranks")
        target = self.version_dir(manifest.task, manifest.version)
        require_finite({PROTOTYPES_KEY: prototypes.detach()}, target / PROTOTYPES_FILE)
        if not (self.backbone_dir(manifest.backbone) / MANIFEST).is_file():
            raise ArtifactError(f"backbone {manifest.backbone!r} is not in {self.root}")
        version = manifest.version
        if target.exists():
            raise ArtifactError(f"{manifest.task} version {version} already exists")
        normalised = torch.nn.functional.normalize(prototypes.detach().float().cpu(), dim=-1)

        def fill(folder: Path) -> None:
            save_tensors({PROTOTYPES_KEY: normalised.contiguous()}, folder / PROTOTYPES_FILE)
            files = {PROTOTYPES_FILE: sha256_of(folder / PROTOTYPES_FILE)}
            final = manifest.model_copy(update={"files": files, "version": version})
            write_json(folder / MANIFEST, final)

        atomic_dir(target, fill)
        if activate:
            self.activate(manifest.task, version)
        return read_manifest(target, TaskManifest)

    def publish_task(
        self, prototypes: torch.Tensor, *, activate: bool = True, **fields: Any
    ) -> TaskManifest:
        """A new version of ``fields["task"]``: the next ``vN``, checksums and timestamp
        filled in, written atomically and (by default) made active."""
        manifest = TaskManifest(
            version=self.next_version(fields["task"]), files={}, created_at=utc_now(), **fields
        )
        return self.write_task_version(manifest, prototypes, activate=activate)

    def next_version(self, task: str) -> str:
        numbers = [
            int(m.group(1)) for v in self.versions(task) if (m := re.fullmatch(r"v(\d+)", v))
        ]
        return f"v{max(numbers, default=0) + 1}"

    def activate(self, task: str, version: str) -> None:
        """Point ``task`` at ``version`` with one atomic rename; readers see old or new."""
        self.load_task(task, version)  # refuse to activate something that does not load
        atomic_text(self.task_dir(task) / ACTIVE_POINTER, version + "\n")


def _natural(name: str) -> tuple[int, str]:
    match = re.fullmatch(r"v(\d+)", name)
    return (int(match.group(1)), name) if match else (1 << 30, name)
