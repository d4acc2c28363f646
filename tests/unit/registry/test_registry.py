"""Registry artifacts: format, checksums, versions and the atomic active pointer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from service.errors import ArtifactError
from service.registry import ModelStore, TaskManifest
from service.registry.store import ACTIVE_POINTER, PROTOTYPES_FILE, VISUAL_FILE


@pytest.fixture
def store(tiny_store: Path, tmp_path: Path) -> ModelStore:
    copy = tmp_path / "store"
    shutil.copytree(tiny_store, copy)
    return ModelStore(copy)


def test_layout_and_manifests(store: ModelStore) -> None:
    backbone = json.loads((store.backbone_dir("tiny-random-s0") / "manifest.json").read_text())
    assert backbone["architecture"] == "tiny"
    assert backbone["weights"]["kind"] == "random"
    assert backbone["preprocess"]["image_size"] == 32
    assert set(backbone["files"]) == {VISUAL_FILE}
    assert store.task_names() == ["aesthetics", "age", "decade"]
    assert store.active_version("age") == "v1"


def test_load_active_snapshot(store: ModelStore) -> None:
    snapshot = store.load_active()
    assert set(snapshot.backbones) == {"tiny-random-s0"}
    age = snapshot.tasks["age"]
    assert age.prototypes.shape == (101, 32)
    assert torch.allclose(age.prototypes.norm(dim=-1), torch.ones(101), atol=1e-5)


def test_tampered_prototypes_are_refused(store: ModelStore) -> None:
    path = store.version_dir("age", "v1") / PROTOTYPES_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"checksum mismatch .*prototypes\.safetensors"):
        store.load_active()


def test_tampered_backbone_is_refused(store: ModelStore) -> None:
    path = store.backbone_dir("tiny-random-s0") / VISUAL_FILE
    path.write_bytes(path.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ArtifactError, match=r"visual\.safetensors"):
        store.load_active()


def test_missing_file_is_named(store: ModelStore) -> None:
    (store.version_dir("decade", "v1") / PROTOTYPES_FILE).unlink()
    with pytest.raises(ArtifactError, match=r"missing artifact file: .*decade.*prototypes"):
        store.load_active()


def test_missing_backbone_is_named(store: ModelStore) -> None:
    shutil.rmtree(store.backbone_dir("tiny-random-s0"))
    with pytest.raises(ArtifactError, match=r"missing manifest: .*tiny-random-s0"):
        store.load_active()


def test_new_version_is_written_beside_and_activated_atomically(store: ModelStore) -> None:
    current = store.load_task("decade")
    manifest = current.manifest.model_copy(update={"version": store.next_version("decade")})
    new = store.write_task_version(manifest, torch.randn(5, 32), activate=False)
    assert new.version == "v2"
    assert store.active_version("decade") == "v1"  # written, not yet served
    store.activate("decade", "v2")
    assert store.active_version("decade") == "v2"
    assert store.versions("decade") == ["v1", "v2"]
    assert not [p for p in store.task_dir("decade").iterdir() if p.name.startswith(".")]


def test_activate_refuses_a_broken_version(store: ModelStore) -> None:
    manifest = store.load_task("decade").manifest.model_copy(update={"version": "v2"})
    store.write_task_version(manifest, torch.randn(5, 32), activate=False)
    (store.version_dir("decade", "v2") / PROTOTYPES_FILE).write_bytes(b"junk")
    with pytest.raises(ArtifactError):
        store.activate("decade", "v2")
    assert (store.task_dir("decade") / ACTIVE_POINTER).read_text().strip() == "v1"


def test_wrong_number_of_prototypes_is_refused(store: ModelStore) -> None:
    manifest = store.load_task("decade").manifest.model_copy(update={"version": "v2"})
    with pytest.raises(ValueError, match="5 ranks"):
        store.write_task_version(manifest, torch.randn(4, 32))


def test_manifest_rejects_unordered_values() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        TaskManifest(
            task="t", version="v1", backbone="b", values=[1, 3, 2], logit_scale=1.0, files={}
        )


def test_served_artifacts_hold_no_pickle(store: ModelStore) -> None:
    for path in store.root.rglob("*"):
        if path.is_file():
            assert path.suffix in (".json", ".safetensors", ""), path
            assert not path.read_bytes().startswith(b"\x80"), f"{path} looks pickled"
