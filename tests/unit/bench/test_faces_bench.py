"""``python -m bench.faces`` (part of ``make bench``) runs end to end on a few composites:
the bench is code too, and an import it lost would only show on the next ``make bench``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server_process import ROOT

pytestmark = pytest.mark.slow


def test_the_faces_bench_writes_recall_and_cost_per_detector(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench.faces", "--images", "1", "--repeat", "1"]
    subprocess.run([*command, "--out", str(tmp_path)], cwd=ROOT, check=True, timeout=600)
    results = json.loads((tmp_path / "faces.json").read_text())
    assert len(results["detectors"]) == 3  # the default, MTCNN upright only, Haar
    for row in results["detectors"].values():
        for source in ("astronaut", "lfw"):
            found = row["recall"][source]
            assert found["images"] == 1 and sum(found["faces"].values()) == 5
            assert 0.0 <= found["recall_ge_40"] <= 1.0
        assert set(row["cost"]) == {"224 px", "12 MP"}
    default = next(iter(results["detectors"].values()))
    assert default["recall"]["astronaut"]["recall_ge_40"] == 1.0  # 5 of 5, 42 to 140 px
    table = (tmp_path / "faces.md").read_text()
    assert table.count("| astronaut |") == 3 and "| 12 MP |" in table
