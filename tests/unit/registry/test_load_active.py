"""Loading the served snapshot: one broken task fails alone unless loading is strict."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.errors import ArtifactError
from service.registry import ModelStore
from service.registry.store import ACTIVE_POINTER, PROTOTYPES_FILE, VISUAL_FILE


@pytest.fixture
def store(tiny_store: Path, tmp_path: Path) -> ModelStore:
    copy = tmp_path / "store"
    shutil.copytree(tiny_store, copy)
    return ModelStore(copy)


def _point_at_missing_version(store: ModelStore, task: str) -> None:
    (store.task_dir(task) / ACTIVE_POINTER).write_text("v9\n")


def test_a_task_pointing_at_a_missing_version_fails_alone(store: ModelStore) -> None:
    _point_at_missing_version(store, "age")
    snapshot = store.load_active(strict=False)
    assert sorted(snapshot.tasks) == ["aesthetics", "decade"]
    assert list(snapshot.failed) == ["age"]
    assert "age/versions/v9" in snapshot.failed["age"]
    assert list(snapshot.backbones) == ["tiny-random-s0"]


def test_strict_loading_refuses_the_whole_store(store: ModelStore) -> None:
    _point_at_missing_version(store, "age")
    with pytest.raises(ArtifactError, match=r"missing manifest: .*age/versions/v9"):
        store.load_active(strict=True)


def test_a_corrupt_task_fails_alone(store: ModelStore) -> None:
    path = store.version_dir("decade", "v1") / PROTOTYPES_FILE
    path.write_bytes(path.read_bytes()[:-4] + b"\0\0\0\0")
    snapshot = store.load_active(strict=False)
    assert sorted(snapshot.tasks) == ["aesthetics", "age"]
    assert "checksum mismatch" in snapshot.failed["decade"]


def test_a_healthy_store_reports_no_failures(store: ModelStore) -> None:
    assert store.load_active(strict=False).failed == {}
    assert store.load_active(strict=True).failed == {}


def test_a_broken_backbone_fails_every_task_on_it_and_then_the_load(store: ModelStore) -> None:
    """Nothing left to serve is an error in both modes; the message says why per task."""
    (store.backbone_dir("tiny-random-s0") / VISUAL_FILE).unlink()
    with pytest.raises(ArtifactError, match=r"no tasks with a loadable .*age: backbone tiny-ra"):
        store.load_active(strict=False)
