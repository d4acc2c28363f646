"""The drift alert fires when a task's mean prediction moves, and only then (promtool)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ALERTS = Path(__file__).resolve().parents[3] / "docker" / "prometheus" / "alerts.yml"
STEPS_BEFORE = 1100  # 10-minute samples: about 7.6 days at a mean position of 0.3
ALERT = "OrdinalServicePredictionDrift"


def series(part: str, task: str, values: str) -> dict[str, str]:
    return {"series": f'oclip_predicted_position_{part}{{task="{task}"}}', "values": values}


RULE_TEST = {
    "rule_files": [str(ALERTS)],
    "evaluation_interval": "10m",
    "tests": [
        {
            "interval": "10m",
            "input_series": [
                series("count", "age", "0+100x1300"),
                series("sum", "age", f"0+30x{STEPS_BEFORE} {30 * STEPS_BEFORE + 60}+60x199"),
                series("count", "aesthetics", "0+100x1300"),
                series("sum", "aesthetics", "0+50x1300"),  # steady at 0.5: never fires
            ],
            "alert_rule_test": [
                {"eval_time": "150h", "alertname": ALERT, "exp_alerts": []},
                {
                    "eval_time": "186h",
                    "alertname": ALERT,
                    "exp_alerts": [
                        {
                            "exp_labels": {"task": "age", "severity": "warning"},
                            "exp_annotations": {
                                "summary": "Mean predicted age moved by more than 10% of its "
                                "range (X = 0.1)",
                                "description": "Last hour vs the week before: 29.7% of the range",
                            },
                        }
                    ],
                },
            ],
        }
    ],
}


def test_the_drift_rule_fires_for_the_task_that_moved(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing: scripts/system-deps.sh installs it")
    spec = tmp_path / "drift_test.yml"
    spec.write_text(yaml.safe_dump(RULE_TEST))
    done = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
