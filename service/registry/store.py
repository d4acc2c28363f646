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
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from service.errors import ArtifactError
from service.registry.manifest import BackboneManifest, TaskManifest

MANIFEST = "manifest.json"
VISUAL_FILE = "visual.safetensors"
PROTOTYPES_FILE = "prototypes.safetensors"
PROTOTYPES_KEY = "prototypes"
ACTIVE_POINTER = "ACTIVE"

M = TypeVar("M", bound=BaseModel)


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
    """Everything the server needs, loaded and verified, keyed by id / task name."""

    backbones: dict[str, LoadedBackbone]
    tasks: dict[str, LoadedTask]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_json(path: Path, model: BaseModel) -> None:
    path.write_text(model.model_dump_json(indent=2) + "\n")


def _read_manifest(folder: Path, model: type[M]) -> M:
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"missing manifest: {path}")
    try:
        return model.model_validate_json(path.read_text())
    except (ValidationError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"invalid manifest {path}: {exc}") from exc


def _load_verified(folder: Path, files: dict[str, str], name: str) -> dict[str, torch.Tensor]:
    """Check every listed file's sha256, then load the safetensors file ``name``."""
    if name not in files:
        raise ArtifactError(f"{folder / MANIFEST} does not list {name}")
    for file_name, expected in files.items():
        path = folder / file_name
        if not path.is_file():
            raise ArtifactError(f"missing artifact file: {path}")
        actual = sha256_of(path)
        if actual != expected:
            raise ArtifactError(
                f"checksum mismatch for {path}: manifest says {expected[:12]}…, "
                f"file has {actual[:12]}…"
            )
    try:
        # Copied out of the memory map: a file changed in place under a running server
        # must not turn into SIGBUS on the next forward pass.
        return {key: tensor.clone() for key, tensor in load_file(folder / name).items()}
    except SafetensorError as exc:
        raise ArtifactError(f"unreadable safetensors file {folder / name}: {exc}") from exc


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
        manifest = _read_manifest(folder, BackboneManifest)
        if manifest.id != backbone_id:
            raise ArtifactError(f"{folder / MANIFEST} names backbone {manifest.id!r}")
        state_dict = _load_verified(folder, manifest.files, VISUAL_FILE)
        return LoadedBackbone(manifest, state_dict, folder)

    def load_task(self, task: str, version: str | None = None) -> LoadedTask:
        version = version or self.active_version(task)
        folder = self.version_dir(task, version)
        manifest = _read_manifest(folder, TaskManifest)
        if (manifest.task, manifest.version) != (task, version):
            raise ArtifactError(f"{folder / MANIFEST} describes {manifest.task}/{manifest.version}")
        tensors = _load_verified(folder, manifest.files, PROTOTYPES_FILE)
        prototypes = tensors.get(PROTOTYPES_KEY)
        if prototypes is None or prototypes.ndim != 2:
            raise ArtifactError(f"{folder / PROTOTYPES_FILE} has no 2-D '{PROTOTYPES_KEY}' tensor")
        if prototypes.shape[0] != manifest.num_ranks:
            raise ArtifactError(
                f"{folder / PROTOTYPES_FILE} has {prototypes.shape[0]} prototypes "
                f"for {manifest.num_ranks} ranks"
            )
        return LoadedTask(manifest, prototypes.float())

    def load_active(self) -> RegistrySnapshot:
        """Load and verify every task's active version and the backbones they use."""
        tasks = {name: self.load_task(name) for name in self.task_names()}
        if not tasks:
            raise ArtifactError(f"no tasks with an active version under {self.root / 'tasks'}")
        backbones: dict[str, LoadedBackbone] = {}
        for loaded in tasks.values():
            backbone_id = loaded.manifest.backbone
            if backbone_id not in backbones:
                backbones[backbone_id] = self.load_backbone(backbone_id)
            dim = backbones[backbone_id].manifest.embed_dim
            if loaded.prototypes.shape[1] != dim:
                raise ArtifactError(
                    f"task {loaded.manifest.task} prototypes are {loaded.prototypes.shape[1]}-d, "
                    f"backbone {backbone_id} embeds to {dim}-d"
                )
        return RegistrySnapshot(backbones, tasks)

    # -- writing -------------------------------------------------------------------------
    def write_backbone(
        self, manifest: BackboneManifest, state_dict: dict[str, torch.Tensor]
    ) -> Path:
        """Write a backbone unless one with the same id exists (ids name immutable weights)."""
        target = self.backbone_dir(manifest.id)
        if (target / MANIFEST).is_file():
            return target

        def fill(folder: Path) -> None:
            tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
            save_file(tensors, folder / VISUAL_FILE)
            files = {VISUAL_FILE: sha256_of(folder / VISUAL_FILE)}
            _write_json(folder / MANIFEST, manifest.model_copy(update={"files": files}))

        _atomic_dir(target, fill)
        return target

    def write_task_version(
        self, manifest: TaskManifest, prototypes: torch.Tensor, *, activate: bool = True
    ) -> TaskManifest:
        """Write a new version folder (version taken from the manifest, or the next ``vN``)."""
        if prototypes.shape != (manifest.num_ranks, prototypes.shape[1]):
            raise ValueError(f"prototypes {tuple(prototypes.shape)} for {manifest.num_ranks} ranks")
        if not (self.backbone_dir(manifest.backbone) / MANIFEST).is_file():
            raise ArtifactError(f"backbone {manifest.backbone!r} is not in {self.root}")
        version = manifest.version
        target = self.version_dir(manifest.task, version)
        if target.exists():
            raise ArtifactError(f"{manifest.task} version {version} already exists")
        normalised = torch.nn.functional.normalize(prototypes.detach().float().cpu(), dim=-1)

        def fill(folder: Path) -> None:
            save_file({PROTOTYPES_KEY: normalised.contiguous()}, folder / PROTOTYPES_FILE)
            files = {PROTOTYPES_FILE: sha256_of(folder / PROTOTYPES_FILE)}
            final = manifest.model_copy(update={"files": files, "version": version})
            _write_json(folder / MANIFEST, final)

        _atomic_dir(target, fill)
        if activate:
            self.activate(manifest.task, version)
        return _read_manifest(target, TaskManifest)

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
        folder = self.task_dir(task)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".ACTIVE.")
        with os.fdopen(fd, "w") as handle:
            handle.write(version + "\n")
        os.replace(tmp, folder / ACTIVE_POINTER)


def _atomic_dir(target: Path, fill: Callable[[Path], None]) -> None:
    """Build a folder under a temporary name beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        fill(staging)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _natural(name: str) -> tuple[int, str]:
    match = re.fullmatch(r"v(\d+)", name)
    return (int(match.group(1)), name) if match else (1 << 30, name)
