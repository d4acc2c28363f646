"""A task whose ACTIVE points at a missing version fails alone; strict mode refuses all."""

from __future__ import annotations

import shutil
from pathlib import Path

from prometheus_client import REGISTRY

from service.api.app import create_app
from service.engine.factory import load_engine
from service.engine.lifecycle import EngineHost
from service.registry.store import ACTIVE_POINTER
from service.settings import Settings
from tests import images
from tests.unit.api.conftest import assert_error, caller, image_parts


def broken_store(tiny_store: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(tiny_store, root)
    (root / "tasks" / "decade" / ACTIVE_POINTER).write_text("v404\n")
    return root


def host_for(root: Path, strict: bool) -> EngineHost:
    settings = Settings(model_store=root, strict_registry=strict)
    host = EngineHost(lambda: load_engine(root, settings.engine_config(), strict))
    host.start_loading()
    host.wait_loaded()
    return host


def test_a_broken_task_fails_alone(tiny_store: Path, tmp_path: Path) -> None:
    root = broken_store(tiny_store, tmp_path)
    host = host_for(root, strict=False)
    try:
        call = caller(create_app(Settings(model_store=root), host))
        ready = call("GET", "/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded" and "decade" in ready.json()["detail"]
        assert call("POST", "/v1/age/predict", files=image_parts(images.png())).status_code == 200
        refused = call("POST", "/v1/decade/predict", files=image_parts(images.png()))
        assert "v404" in assert_error(refused, 503, "not_ready")["error"]["message"]
        assert REGISTRY.get_sample_value("oclip_task_load_failed", {"task": "decade"}) == 1.0
    finally:
        host.stop()


def test_strict_registry_serves_nothing(tiny_store: Path, tmp_path: Path) -> None:
    root = broken_store(tiny_store, tmp_path)
    host = host_for(root, strict=True)
    try:
        call = caller(create_app(Settings(model_store=root, strict_registry=True), host))
        ready = call("GET", "/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert "decade" in ready.json()["detail"]
    finally:
        host.stop()
