"""Schemathesis on the live schema, every check: the schema accepts only what the server
accepts, the server rejects what the schema rejects, and every answer is documented.

Positive cases upload real images (tests/e2e/schemathesis_hooks.py) to served tasks (the
schema's examples), so the predict path answers 200 in the mix and is fuzzed as well.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server_process import ROOT, serving

pytestmark = pytest.mark.slow

API_KEY = "fuzz-key"
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_all_checks_pass_with_predictions_in_the_mix(
    tiny_store: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    with serving(tiny_store, log, {"OCLIP_API_KEYS": API_KEY}) as server:
        command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file"]
        command += [str(CONFIG), "run", f"{server.url}/openapi.json", "--checks", "all"]
        command += ["--max-examples", os.environ.get("OCLIP_FUZZ_EXAMPLES", "25")]
        command += ["--seed", "1", "-H", f"Authorization: Bearer {API_KEY}"]
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks"}
        result = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        lines = [json.loads(line) for line in log.read_text().splitlines() if '"route"' in line]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    answered = {(line["route"], line["status"]) for line in lines}
    assert ("/v1/{task}/predict", 200) in answered
    assert ("/v1/predict", 200) in answered
    assert ("/v1/predict", 422) in answered  # negative cases were sent, and rejected
