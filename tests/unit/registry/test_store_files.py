"""What the registry writes: permissions that follow the umask, finite values only."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from service.errors import ArtifactError
from service.registry import ModelStore
from service.registry.store import PROTOTYPES_FILE, PROTOTYPES_KEY, VISUAL_FILE, sha256_of
from service.trainer.architectures import BuiltClip, backbone_manifest
from service.trainer.tasks import DECADE
from service.trainer.zeroshot import publish_zeroshot

BACKBONE = "tiny-random-s0"


@pytest.fixture
def store(tiny_store: Path, tmp_path: Path) -> ModelStore:
    copy = tmp_path / "store"
    shutil.copytree(tiny_store, copy)
    return ModelStore(copy)


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


def test_artifacts_follow_the_umask_like_ordinary_files(
    tmp_path: Path, tiny_clip: BuiltClip, umask_022: None
) -> None:
    store = ModelStore(tmp_path / "store")
    publish_zeroshot(store, tiny_clip, [DECADE], "tests")
    store.activate("decade", "v1")  # rewrites ACTIVE through its staging file
    modes = _modes(store.root)
    assert "tasks/decade/ACTIVE" in modes and f"backbones/{BACKBONE}/{VISUAL_FILE}" in modes
    wrong = {
        name: oct(mode)
        for name, mode in modes.items()
        if mode != (0o755 if (store.root / name).is_dir() else 0o644)
    }
    assert wrong == {}


def _rewrite_tensor(folder: Path, file_name: str, tensors: dict[str, torch.Tensor]) -> Path:
    """Replace an artifact's tensors and fix its checksum, as a buggy producer would."""
    path = folder / file_name
    save_file(tensors, path)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][file_name] = sha256_of(path)
    manifest_path.write_text(json.dumps(manifest))
    return path


def test_non_finite_prototypes_are_not_loaded(store: ModelStore) -> None:
    loaded = store.load_task("decade")
    prototypes = loaded.prototypes.clone()
    prototypes[2, 5] = float("nan")
    folder = store.version_dir("decade", "v1")
    _rewrite_tensor(folder, PROTOTYPES_FILE, {PROTOTYPES_KEY: prototypes})
    with pytest.raises(ArtifactError, match=r"decade/versions/v1/prototypes\.safetensors.*finite"):
        store.load_task("decade")


def test_non_finite_backbone_weights_are_not_loaded(store: ModelStore) -> None:
    state = store.load_backbone(BACKBONE).state_dict
    name = next(iter(state))
    state[name] = state[name].clone().fill_(float("inf"))
    _rewrite_tensor(store.backbone_dir(BACKBONE), VISUAL_FILE, state)
    with pytest.raises(ArtifactError, match=rf"{BACKBONE}/visual\.safetensors.*{name}"):
        store.load_backbone(BACKBONE)


def test_non_finite_prototypes_are_not_published(store: ModelStore) -> None:
    fields = store.load_task("decade").manifest.model_dump(
        exclude={"version", "files", "created_at"}
    )
    prototypes = torch.randn(5, 32)
    prototypes[0, 0] = float("-inf")
    with pytest.raises(ArtifactError, match=r"decade/versions/v2/prototypes\.safetensors"):
        store.publish_task(prototypes, **fields)
    assert store.versions("decade") == ["v1"]


def test_non_finite_backbone_weights_are_not_published(
    store: ModelStore, tiny_clip: BuiltClip
) -> None:
    state = {k: v.clone() for k, v in tiny_clip.model.visual.state_dict().items()}
    state["proj"][0, 0] = float("nan")
    manifest = backbone_manifest(tiny_clip).model_copy(update={"id": "other"})
    with pytest.raises(ArtifactError, match=r"backbones/other/visual\.safetensors.*'proj'"):
        store.write_backbone(manifest, state)
    assert not store.backbone_dir("other").exists()


def test_non_finite_manifest_numbers_are_refused(store: ModelStore) -> None:
    path = store.version_dir("decade", "v1") / "manifest.json"
    text = re.sub(r'"logit_scale": [^,]+,', '"logit_scale": Infinity,', path.read_text())
    assert "Infinity" in text
    path.write_text(text)
    with pytest.raises(ArtifactError, match=r"invalid manifest .*decade/versions/v1"):
        store.load_task("decade")


def test_same_weights_reuse_the_backbone_id(store: ModelStore, tiny_clip: BuiltClip) -> None:
    before = (store.backbone_dir(BACKBONE) / VISUAL_FILE).stat().st_mtime_ns
    stored = store.write_backbone(backbone_manifest(tiny_clip), tiny_clip.model.visual.state_dict())
    assert stored.id == BACKBONE
    assert (store.backbone_dir(BACKBONE) / VISUAL_FILE).stat().st_mtime_ns == before
    assert sorted(p.name for p in (store.root / "backbones").iterdir()) == [BACKBONE]


def test_changed_weights_under_an_existing_id_get_a_new_id(
    store: ModelStore, tiny_clip: BuiltClip
) -> None:
    """A checkpoint changed in place keeps its name; the registry must not serve the old
    weights for it, nor overwrite them under the tasks that use them."""
    state = {k: v.clone() for k, v in tiny_clip.model.visual.state_dict().items()}
    state["proj"] += 0.01
    old = store.load_backbone(BACKBONE)
    stored = store.write_backbone(backbone_manifest(tiny_clip), state)
    assert stored.id.startswith(f"{BACKBONE}-") and stored.id != BACKBONE
    assert torch.equal(store.load_backbone(stored.id).state_dict["proj"], state["proj"])
    assert torch.equal(store.load_backbone(BACKBONE).state_dict["proj"], old.state_dict["proj"])
    again = store.write_backbone(backbone_manifest(tiny_clip), state)
    assert again.id == stored.id  # the derived id is stable, not a fresh one per call
    assert len(list((store.root / "backbones").iterdir())) == 2


def test_manifests_leave_unset_optional_fields_out(tmp_path: Path) -> None:
    """A store written now, using no newer feature, stays readable by an older server
    (whose manifests forbid unknown keys): a rollback must not break on ``null`` fields."""
    from service.registry.files import write_json
    from service.registry.manifest import TaskManifest

    manifest = TaskManifest(
        task="age", version="v1", backbone="b", values=[0, 1], logit_scale=10.0, files={}
    )
    path = tmp_path / "manifest.json"
    write_json(path, manifest)
    text = path.read_text()
    assert "calibration" not in text and "crop" not in text and "null" not in text
    assert TaskManifest.model_validate_json(text) == manifest
