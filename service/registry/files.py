"""Artifact files: checksums, verified loads, finite values, and atomic writes.

Writes honour the process umask like any ordinary file (0644 files, 0755 folders under
the usual 022): a registry written by one user is served by another, e.g. a container's
uid reading a store mounted read-only. ``tempfile.mkdtemp``/``mkstemp`` would make them
0700/0600 instead, so staging names are made here and opened with ``O_EXCL``; and
safetensors' ``save_file`` writes through a private 0600 file, so :func:`save_tensors`
gives its result the mode a new file gets.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import torch
from pydantic import BaseModel, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from service.errors import ArtifactError

MANIFEST = "manifest.json"

M = TypeVar("M", bound=BaseModel)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, model: BaseModel) -> None:
    """Unset optional fields are left out, so a manifest that uses no newer feature (a
    calibration, a face crop) stays readable by the servers before them: a rollback works."""
    path.write_text(model.model_dump_json(indent=2, exclude_none=True) + "\n")


def read_manifest(folder: Path, model: type[M]) -> M:
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"missing manifest: {path}")
    try:
        return model.model_validate_json(path.read_text())
    except (ValidationError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"invalid manifest {path}: {exc}") from exc


def require_finite(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse NaN or infinity: one would turn every answer of a task into NaN."""
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ArtifactError(f"{path}: tensor {key!r} has non-finite values (NaN or inf)")


def load_verified(folder: Path, files: dict[str, str], name: str) -> dict[str, torch.Tensor]:
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
        tensors = {key: tensor.clone() for key, tensor in load_file(folder / name).items()}
    except SafetensorError as exc:
        raise ArtifactError(f"unreadable safetensors file {folder / name}: {exc}") from exc
    require_finite(tensors, folder / name)
    return tensors


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """``save_file``, then the file mode of any new file here (0o666 & ~umask)."""
    save_file(tensors, path)
    probe = _staging_name(path)
    probe.touch(exist_ok=False)  # the one thread-safe way to learn the umask's effect
    try:
        shutil.copymode(probe, path)
    finally:
        probe.unlink()


def _staging_name(target: Path) -> Path:
    return target.parent / f".{target.name}.{secrets.token_hex(8)}"


@contextmanager
def staging_dir(parent: Path, name: str) -> Iterator[Path]:
    """A fresh folder ``parent/.name.<random>``, removed on exit unless renamed away."""
    parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_name(parent / name)
    staging.mkdir()  # mode 0o777 & ~umask, as for any folder
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_dir(target: Path, fill: Callable[[Path], None]) -> None:
    """Build a folder under a temporary name beside ``target``, then rename it into place."""
    with staging_dir(target.parent, target.name) as staging:
        fill(staging)
        os.rename(staging, target)


def atomic_file(path: Path, write: Callable[[Path], object]) -> None:
    """Replace ``path`` with what ``write`` puts at a fresh staging path beside it, in one
    rename: readers (another process, a resumed run) see the old file or the new one."""
    staging = _staging_name(path)
    try:
        write(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def atomic_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename; readers see the old or the new file."""

    def write(staging: Path) -> None:
        with staging.open("x") as handle:  # O_CREAT | O_EXCL, mode 0o666 & ~umask
            handle.write(text)

    atomic_file(path, write)
