"""NumCLIP end to end: ``fit --prompt numclip`` → published → the real server gives the MAE
that ``evaluate`` measures; ``compare`` trains the three methods on one protocol."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.registry import ModelStore
from service.trainer.__main__ import main
from service.trainer.compare import COLUMNS, METHODS
from service.trainer.data import read_samples
from service.trainer.evaluate import evaluate_published
from service.trainer.loop import LOG
from service.trainer.synthetic import write_synthetic
from tests.server_process import start_server, stop_server

pytestmark = pytest.mark.slow
RANKS = 10
TASK = "count"


def test_numclip_fit_publish_serve_and_agree_over_http(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lists = write_synthetic(tmp_path / "data", RANKS, {"train": 32, "val": 10}, size=32, seed=0)
    root, store, run = tmp_path / "data", tmp_path / "store", tmp_path / "run"
    main(
        [
            *("fit", "--prompt", "numclip", "--coarse-bins", "5", "--coarse-epochs", "6"),
            *("--train", str(lists["train"]), "--val", str(lists["val"])),
            *("--images-root", str(root), "--task", TASK, "--ranks", f"0:{RANKS - 1}"),
            *("--backbone", "tiny", "--num-context", "4", "--epochs", "14"),
            *("--batch-size", "32", "--lr", "3e-3", "--output", str(run)),
            *("--model-store", str(store)),
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    history = [json.loads(line) for line in (run / LOG).read_text().splitlines()]
    assert [h["coarse_stage"] for h in history] == pytest.approx([1.0] * 6 + [0.0] * 8)
    # it learns (slowly at this budget: bench/results/compare), and the fine stage adds to it
    assert summary["mae_expected"] < summary["mae_predict_mean"]
    assert history[-1]["val_mae_expected"] < history[5]["val_mae_expected"]

    loaded = ModelStore(store).load_task(TASK)
    assert loaded.manifest.provenance["method"] == "NumCLIP coarse-to-fine prompts"
    assert loaded.manifest.provenance["config"]["prompt"] == "numclip"
    assert loaded.prototypes.shape[0] == RANKS  # the fine ranks, not the 5 bins
    assert loaded.manifest.metrics["mae_expected"] == pytest.approx(summary["mae_expected"])
    offline = evaluate_published(store, TASK, lists["val"], root)
    assert offline["mae_expected"] == pytest.approx(summary["mae_expected"], abs=1e-4)

    server = start_server(store, tmp_path / "server.log", env={"OCLIP_PRECISION": "fp32"})
    try:
        errors = []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for sample in read_samples(lists["val"], root, RANKS):
                files = {"image": (sample.path.name, sample.path.read_bytes(), "image/png")}
                body = client.post(
                    f"/v1/{TASK}/predict", files=files, params={"distribution": "false"}
                ).json()
                errors.append(abs(body["predictions"][0]["expected"] - sample.rank))
    finally:
        stop_server(server)
    assert float(np.mean(errors)) == pytest.approx(offline["mae_expected"], abs=1e-4)


def test_compare_trains_the_three_methods_on_one_protocol(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    main(
        [
            *("compare", "--out", str(out), "--work", str(work), "--seeds", "3"),
            *("--epochs", "4", "--train-per-rank", "8", "--test-per-rank", "6"),
        ]
    )
    results = json.loads((out / "compare.json").read_text())
    assert [(r["method"], r["seed"]) for r in results["runs"]] == [(m, 3) for m in METHODS]
    for row in results["runs"]:  # each row is evaluate's figures of that method's store
        store = work / "seed-3" / f"store-{row['method']}"
        manifest = ModelStore(store).load_task(TASK).manifest
        assert manifest.calibration is not None and manifest.version == "v2"
        test_list = work / "seed-3" / "data" / "test.txt"
        figures = evaluate_published(store, TASK, test_list, work / "seed-3" / "data")
        assert {key: figures[key] for key, _, _ in COLUMNS} == {k: row[k] for k, _, _ in COLUMNS}
        assert results["summary"][row["method"]]["mae_expected"]["mean"] == row["mae_expected"]
    table = (out / "compare.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in table[4:]] == list(METHODS)
    assert (out / "compare.png").stat().st_size > 10_000
