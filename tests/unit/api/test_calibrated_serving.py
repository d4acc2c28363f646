"""A calibrated task version is served with its temperature and interval mass, and says so."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from service.api.app import create_app
from service.engine.post import rank_probabilities, summarize
from service.registry import ModelStore
from service.registry.manifest import Calibration
from service.settings import Settings
from tests import images
from tests.unit.api.conftest import caller, image_parts, loaded_host

CALIBRATION = Calibration(
    temperature=2.0,
    level=0.9,
    interval_mass=0.5,
    n=100,
    list_sha256="0" * 64,
    coverage_before=0.99,
    coverage_after=0.9,
    nll_before=2.0,
    nll_after=1.5,
    source_version="v1",
)


def test_calibrated_version_is_served_as_calibrated(tiny_store: Path, tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    store = ModelStore(root)
    age = store.load_task("age")
    manifest = age.manifest.model_copy(
        update={"version": store.next_version("age"), "calibration": CALIBRATION}
    )
    store.write_task_version(manifest, age.prototypes, activate=True)
    host = loaded_host(root)
    try:
        call = caller(create_app(Settings(model_store=root), host))
        info = call("GET", "/v1/models/age").json()
        assert info["calibrated"] is True
        assert info["calibration"]["temperature"] == 2.0
        assert info["logit_scale"] == pytest.approx(age.manifest.logit_scale / 2)
        assert call("GET", "/v1/models/decade").json()["calibrated"] is False  # older format

        picture = images.png(seed=4)
        answer = call("POST", "/v1/age/predict", files=image_parts(picture)).json()
        (prediction,) = answer["predictions"]
        assert answer["model"]["version"] == manifest.version

        # The same numbers from the engine's matching code at the served scale and mass.
        assert host.engine is not None
        backbone = host.engine.backbones[manifest.backbone]
        features = backbone.tower.encode(backbone.preprocess(picture)[None])
        served = rank_probabilities(features, age.prototypes, age.manifest.logit_scale / 2)
        values = np.asarray(manifest.values)
        expected = summarize(served[0].double().numpy(), values, 0.5)
        assert prediction["expected"] == pytest.approx(expected.expected, abs=1e-4)
        assert prediction["interval"] == {
            "level": 0.9,  # the promise stays the level; the mass behind it is calibrated
            "low": expected.interval_low,
            "high": expected.interval_high,
        }
        gauge = REGISTRY.get_sample_value("oclip_task_calibrated", {"task": "age"})
        assert gauge == 1.0
        assert REGISTRY.get_sample_value("oclip_task_calibrated", {"task": "decade"}) == 0.0
    finally:
        host.stop()
