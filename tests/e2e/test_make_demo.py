"""``make serve`` / ``make demo``: one demo store per backbone, and a plain word otherwise.

Runs the real Makefile. ``-o .venv/.installed`` keeps make from reinstalling, and ``BIN``
points it at this interpreter, so the test never touches the environment it runs in.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.server_process import ROOT

BIN = Path(sys.executable).parent
MAKE = ["make", "--no-print-directory", "-o", ".venv/.installed", f"BIN={BIN}"]


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MAKE, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_default_store_depends_on_the_backbone() -> None:
    for backbone, extra in (("ViT-B-16", ()), ("tiny", ("DEMO_BACKBONE=tiny",))):
        dry = make("-n", "serve", *extra)
        assert dry.returncode == 0, dry.stderr
        store = f"--model-store model_store/demo-{backbone}"
        assert f"service.trainer demo {store} --backbone {backbone} --if-empty" in dry.stdout
        assert f"-m service {store} " in dry.stdout


def test_a_store_built_for_another_backbone_is_named_and_left(tmp_path: Path) -> None:
    store = tmp_path / "store"
    built = make("demo", f"STORE={store}", "DEMO_BACKBONE=tiny")
    assert built.returncode == 0, built.stderr
    assert "age v1 -> backbone tiny-random-s0" in built.stdout
    again = make("demo", f"STORE={store}")  # DEMO_BACKBONE defaults to ViT-B-16
    assert again.returncode == 0, again.stderr
    assert "WARNING" in again.stderr and "not ViT-B-16-random-s0" in again.stderr
    assert "model_store/demo-ViT-B-16" in again.stderr
    assert sorted(p.name for p in (store / "backbones").iterdir()) == ["tiny-random-s0"]
