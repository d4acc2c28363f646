"""Command lines: settings from env and flags, and the demo producer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.__main__ import parse_overrides
from service.registry import ModelStore
from service.settings import Settings
from tests.conftest import ROOT


def test_every_setting_has_a_flag_and_flags_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCLIP_PORT", "9000")
    monkeypatch.setenv("OCLIP_MAX_BATCH_SIZE", "3")
    overrides = parse_overrides(["--port", "9100", "--model-store", "/srv/models"])
    settings = Settings.model_validate({**Settings().model_dump(), **overrides})
    assert settings.port == 9100
    assert settings.model_store == Path("/srv/models")
    assert settings.max_batch_size == 3  # from env, no flag given
    help_text = subprocess.run(
        [sys.executable, "-m", "service", "--help"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in help_text


def test_invalid_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCLIP_PRECISION", "fp8")
    with pytest.raises(ValueError, match="precision"):
        Settings()


@pytest.mark.slow
def test_demo_command_builds_a_registry_once(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "service.trainer", "demo", "--model-store", str(tmp_path)]
    first = subprocess.run([*command, "--if-empty"], cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "age v1 -> backbone tiny-random-s0" in first.stdout
    second = subprocess.run([*command, "--if-empty"], cwd=ROOT, capture_output=True, text=True)
    assert second.returncode == 0 and second.stdout == ""
    assert ModelStore(tmp_path).versions("age") == ["v1"]
    snapshot = ModelStore(tmp_path).load_active()
    assert set(snapshot.tasks) == {"age", "aesthetics", "decade"}


def test_zeroshot_custom_task_needs_values_and_templates(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.trainer",
            "zeroshot",
            "--model-store",
            str(tmp_path),
            "--backbone",
            "tiny",
            "--pretrained",
            "x",
            "--task",
            "height",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "tiny" in result.stderr  # the tiny architecture has no pretrained weights


def test_docs_document_every_setting() -> None:
    page = (ROOT / "docs/operating.md").read_text()
    for name in Settings.model_fields:
        assert f"OCLIP_{name.upper()}" in page, name


def test_server_never_imports_the_trainer() -> None:
    code = (
        "import sys, service.__main__, service.api.app;"
        "from service.api import create_app; create_app();"
        "print(sorted(m for m in sys.modules if m.startswith(('service.trainer', "
        "'service.batch', 'ray.')) or m == 'ray'))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
