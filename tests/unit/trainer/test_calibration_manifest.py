"""The manifest's calibration block: what the engine serves with it, and without it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from service.registry import ModelStore
from service.registry.manifest import Calibration
from service.trainer.calibration import publish_calibrated

BLOCK = Calibration(
    temperature=2.0,
    level=0.9,
    interval_mass=0.7,
    n=100,
    list_sha256="0" * 64,
    coverage_before=1.0,
    coverage_after=0.91,
    nll_before=1.7,
    nll_after=1.2,
    source_version="v1",
)


@pytest.fixture
def store(tiny_store: Path, tmp_path: Path) -> ModelStore:
    shutil.copytree(tiny_store, tmp_path / "store")
    return ModelStore(tmp_path / "store")


def test_a_registry_written_before_calibration_existed_loads_as_uncalibrated(
    store: ModelStore,
) -> None:
    for task in store.task_names():
        path = store.version_dir(task, store.active_version(task)) / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest.pop("calibration", None)  # as written before the block existed
        path.write_text(json.dumps(manifest))
    snapshot = store.load_active()
    for loaded in snapshot.tasks.values():
        manifest = loaded.manifest
        assert manifest.calibration is None
        assert manifest.serving_logit_scale() == manifest.logit_scale
        assert manifest.interval_mass(0.9) == 0.9
        assert manifest.interval_mass(0.5) == 0.5


def test_a_calibrated_version_is_new_active_and_serves_its_block(store: ModelStore) -> None:
    old = store.load_task("aesthetics")
    new = publish_calibrated(store, old.manifest, old.prototypes, BLOCK)
    assert (new.version, store.active_version("aesthetics")) == ("v2", "v2")
    assert store.versions("aesthetics") == ["v1", "v2"]  # the old version stays
    loaded = store.load_task("aesthetics")
    manifest = loaded.manifest
    assert manifest.calibration == BLOCK
    assert manifest.provenance["calibrated_from"] == "v1"
    assert manifest.values == old.manifest.values
    assert manifest.logit_scale == old.manifest.logit_scale
    assert torch.allclose(loaded.prototypes, old.prototypes, atol=1e-6)  # re-normalised rows
    assert manifest.serving_logit_scale() == pytest.approx(old.manifest.logit_scale / 2.0)
    assert manifest.interval_mass(0.9) == 0.7
    assert manifest.interval_mass(0.8) == 0.8  # calibrated for 0.9 only
    assert store.load_task("aesthetics", "v1").manifest.calibration is None


def test_recalibrating_replaces_the_block_rather_than_stacking_it(store: ModelStore) -> None:
    old = store.load_task("decade")
    once = publish_calibrated(store, old.manifest, old.prototypes, BLOCK)
    again = BLOCK.model_copy(update={"temperature": 3.0, "source_version": once.version})
    twice = publish_calibrated(store, once, old.prototypes, again)
    assert twice.serving_logit_scale() == pytest.approx(old.manifest.logit_scale / 3.0)
    assert twice.provenance["calibrated_from"] == "v2"
