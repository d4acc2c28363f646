"""End to end on synthetic ordinal data: fit a tiny model, calibrate it, measure held-out.

The tiny model's frozen logit scale (1/0.07) leaves it under-confident: its 90% interval
covers nearly everything. A forced scale makes it over-confident. Calibration must bring
the served 90% interval to 0.86-0.94 on images it never saw, with no worse NLL.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.registry import ModelStore, TaskManifest
from service.registry.store import sha256_of
from service.trainer.__main__ import main
from service.trainer.calibration import calibrate, conformal_target
from service.trainer.distribution_scores import coverage, nll
from service.trainer.evaluate import encode_list, evaluate_published, served_probabilities
from service.trainer.synthetic import write_synthetic

pytestmark = pytest.mark.slow
RANKS = 10
TASK = "count"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``fit --calibrate-split``: v1 as trained, v2 calibrated on 90% of the validation list."""
    root = tmp_path_factory.mktemp("calibration")
    lists = write_synthetic(root, RANKS, {"train": 32, "val": 110, "test": 100}, size=32, seed=0)
    store, run = root / "store", root / "run"
    main(
        [
            *("fit", "--train", str(lists["train"]), "--val", str(lists["val"])),
            *("--images-root", str(root), "--task", TASK, "--ranks", f"0:{RANKS - 1}"),
            *("--backbone", "tiny", "--num-context", "4", "--epochs", "15"),
            *("--batch-size", "32", "--lr", "3e-3", "--output", str(run)),
            *("--model-store", str(store), "--calibrate-split", "0.9"),
        ]
    )
    return {"root": root, "store": store, "run": run, **lists}


def test_fit_publishes_a_calibrated_version_beside_the_trained_one(
    trained: dict[str, Path],
) -> None:
    store = ModelStore(trained["store"])
    assert store.versions(TASK) == ["v1", "v2"]
    assert store.active_version(TASK) == "v2"
    block = store.load_task(TASK).manifest.calibration
    assert block is not None and store.load_task(TASK, "v1").manifest.calibration is None
    held_out = trained["run"] / "calibration.txt"
    assert block.n == len(held_out.read_text().splitlines()) == 99 * RANKS
    assert block.list_sha256 == sha256_of(held_out)
    kept = (trained["run"] / "val_fit.txt").read_text().splitlines()
    assert not set(kept) & set(held_out.read_text().splitlines())
    assert block.coverage_after >= conformal_target(block.n, 0.9)
    assert block.nll_after <= block.nll_before


def test_held_out_coverage_reaches_the_promise_and_nll_is_no_worse(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    args = (trained["store"], TASK, trained["test"], trained["root"])
    before = evaluate_published(*args, version="v1")
    after = evaluate_published(
        *args, version="v2", plot_path=tmp_path / "eval.png", json_path=tmp_path / "eval.json"
    )
    print(
        f"synthetic held-out: coverage {before['coverage']:.3f} -> {after['coverage']:.3f}, "
        f"NLL {before['nll']:.3f} -> {after['nll']:.3f}"
    )
    assert not 0.86 <= before["coverage"] <= 0.94
    assert 0.86 <= after["coverage"] <= 0.94
    assert after["nll"] <= before["nll"]
    assert (after["calibrated"], before["calibrated"]) == (True, False)
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["coverage"] == after["coverage"]
    assert [b["band"] for b in written["by_band"]] == [str(r) for r in range(RANKS)]
    assert sum(b["count"] for b in written["by_band"]) == 100 * RANKS
    assert (tmp_path / "eval.png").stat().st_size > 20_000


def test_an_overconfident_scale_is_calibrated_as_served(trained: dict[str, Path]) -> None:
    store = ModelStore(trained["store"])
    held_out = trained["run"] / "calibration.txt"
    cal = encode_list(store, TASK, held_out, trained["root"], version="v1")
    test = encode_list(store, TASK, trained["test"], trained["root"], version="v1")
    scale = 50 * cal.task.manifest.logit_scale  # about 6x the NLL-optimal scale
    forced = cal.task.manifest.model_copy(update={"logit_scale": scale})
    prototypes = cal.task.prototypes
    served = forced.model_copy(update={"calibration": calibrate(forced, prototypes, cal, 0.9)})
    values = np.arange(RANKS, dtype=np.float64)

    def measured(manifest: TaskManifest) -> tuple[float, float]:
        p = served_probabilities(test.features, prototypes, manifest.serving_logit_scale())
        return coverage(p, test.labels, values, manifest.interval_mass(0.9)), nll(p, test.labels)

    (coverage_before, nll_before), (coverage_after, nll_after) = measured(forced), measured(served)
    print(
        f"over-confident: coverage {coverage_before:.3f} -> {coverage_after:.3f}, "
        f"NLL {nll_before:.3f} -> {nll_after:.3f}"
    )
    assert coverage_before < 0.86
    assert 0.86 <= coverage_after <= 0.94
    assert nll_after <= nll_before


def test_calibrate_command_publishes_for_another_level(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    main(
        [
            *("calibrate", "--model-store", str(trained["store"]), "--task", TASK),
            *("--version", "v1", "--list", str(trained["run"] / "calibration.txt")),
            *("--images-root", str(trained["root"]), "--level", "0.8"),
        ]
    )
    printed = json.loads(capsys.readouterr().out)
    manifest = ModelStore(trained["store"]).load_task(TASK, printed["version"]).manifest
    assert manifest.calibration is not None
    assert manifest.calibration.model_dump() == {k: v for k, v in printed.items() if k != "version"}
    assert manifest.interval_mass(0.8) == manifest.calibration.interval_mass != 0.8
    assert manifest.calibration.coverage_after >= conformal_target(manifest.calibration.n, 0.8)
