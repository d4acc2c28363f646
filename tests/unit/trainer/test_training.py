"""End to end: synthetic data → fit → publish → the real server → the same MAE over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from service.registry import ModelStore
from service.trainer.data import DataError, read_samples
from service.trainer.evaluate import evaluate_published
from service.trainer.fit_config import TrainConfig
from service.trainer.loop import CHECKPOINT, LOG, fit
from service.trainer.publish import publish_trained
from service.trainer.synthetic import write_synthetic
from tests.server_process import ROOT, start_server, stop_server

pytestmark = pytest.mark.slow
RANKS = 10


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    lists = write_synthetic(root, RANKS, {"train": 32, "val": 10}, size=32, seed=0)
    return {"root": root, **lists}


def config_for(dataset: dict[str, Path], output: Path, **overrides: object) -> TrainConfig:
    values = {
        "train": dataset["train"],
        "val": dataset["val"],
        "images_root": dataset["root"],
        "task": "count",
        "ranks": f"0:{RANKS - 1}",
        "unit": "disks",
        "backbone": "tiny",
        "num_context": 4,
        "epochs": 15,
        "batch_size": 32,
        "lr": 3e-3,
        "output": output,
    }
    return TrainConfig.model_validate({**values, **overrides})


def test_fit_publish_serve_and_agree_over_http(dataset: dict[str, Path], tmp_path: Path) -> None:
    config = config_for(dataset, tmp_path / "run")
    result = fit(config)
    baseline = result.best_metrics["mae_predict_mean"]
    assert result.best_metrics["mae_expected"] < 0.5 * baseline  # far below predicting the mean
    history = [json.loads(line) for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(1, 16))

    store = ModelStore(tmp_path / "store")
    manifest = publish_trained(
        store,
        result.built,
        result.model,
        config,
        result.scale,
        {**result.best_metrics, "best_epoch": result.best_epoch},
    )
    assert manifest.provenance["method"] == "OrdinalCLIP rank prompts"
    assert manifest.metrics["mae_expected"] == pytest.approx(result.best_metrics["mae_expected"])
    offline = evaluate_published(
        store.root, "count", dataset["val"], dataset["root"], plot_path=tmp_path / "eval.png"
    )
    assert offline["mae_expected"] == pytest.approx(result.best_metrics["mae_expected"], abs=1e-4)
    assert (tmp_path / "eval.png").stat().st_size > 10_000

    server = start_server(store.root, tmp_path / "server.log", env={"OCLIP_PRECISION": "fp32"})
    try:
        errors = []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for sample in read_samples(dataset["val"], dataset["root"], RANKS):
                files = {"image": (sample.path.name, sample.path.read_bytes(), "image/png")}
                body = client.post(
                    "/v1/count/predict", files=files, params={"distribution": "false"}
                ).json()
                errors.append(abs(body["predictions"][0]["expected"] - sample.rank))
            served = client.get("/v1/models/count").json()
    finally:
        stop_server(server)
    assert float(np.mean(errors)) == pytest.approx(offline["mae_expected"], abs=1e-4)
    assert served["metrics"]["mae_expected"] == pytest.approx(result.best_metrics["mae_expected"])


def test_finetune_publishes_a_new_backbone_and_resume_continues(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    config = config_for(
        dataset,
        tmp_path / "run",
        image_encoder="finetune",
        finetune_last=1,
        epochs=2,
        shots=16,
        batch_size=16,
        grad_clip=1.0,
        optimizer="adamw",
        warmup_epochs=0.5,
    )
    first = fit(config)
    manifest = publish_trained(
        ModelStore(tmp_path / "store"),
        first.built,
        first.model,
        config,
        first.scale,
        first.best_metrics,
    )
    assert manifest.backbone.startswith("tiny-ft-count-")
    backbone = ModelStore(tmp_path / "store").load_backbone(manifest.backbone)
    assert backbone.manifest.weights.kind == "fine-tuned"
    resumed = fit(config.model_copy(update={"epochs": 3, "resume": True}))
    assert [h["epoch"] for h in resumed.history] == [3]
    lines = (tmp_path / "run" / LOG).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_bad_rows_are_reported_and_skipped_or_fatal(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.txt"
    good_line = dataset["val"].read_text().splitlines()[0]
    (tmp_path / "junk.png").write_bytes(b"not an image")
    bad.write_text(
        f"{good_line}\nimages/missing.png 3\n{good_line.split()[0]} 42\n"
        f"{dataset['root'] / 'x'} nope\n"
    )
    samples = read_samples(bad, dataset["root"], RANKS)
    assert len(samples) == 1
    with pytest.raises(DataError, match=r"3 bad rows .*bad\.txt:2: missing file"):
        read_samples(bad, dataset["root"], RANKS, strict=True)


def test_csv_and_folder_formats(dataset: dict[str, Path], tmp_path: Path) -> None:
    lines = dataset["val"].read_text().splitlines()[:5]
    csv_file = tmp_path / "val.csv"
    csv_file.write_text("path,label\n" + "\n".join(",".join(line.split()) for line in lines))
    assert [s.rank for s in read_samples(csv_file, dataset["root"], RANKS)] == [0] * 5
    folder = tmp_path / "by_rank"
    for rank in (0, 3):
        (folder / str(rank)).mkdir(parents=True)
        (folder / str(rank) / "a.png").write_bytes(
            (dataset["root"] / lines[0].split()[0]).read_bytes()
        )
    assert sorted(s.rank for s in read_samples(folder, Path("/nowhere"), RANKS)) == [0, 3]


def test_ddp_two_processes_match_one(dataset: dict[str, Path], tmp_path: Path) -> None:
    """2 gloo processes x 8 images == 1 process x 16 images (frozen encoder, 2 epochs)."""
    common = [
        "--train",
        str(dataset["train"]),
        "--val",
        str(dataset["val"]),
        "--images-root",
        str(dataset["root"]),
        "--task",
        "count",
        "--ranks",
        "0:9",
        "--backbone",
        "tiny",
        "--num-context",
        "4",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "3e-3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    for procs in (1, 2):
        command = [
            *torchrun,
            f"--nproc-per-node={procs}",
            "-m",
            "service.trainer",
            "fit",
            *common,
            "--output",
            str(tmp_path / f"p{procs}"),
        ]
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
    one = torch.load(tmp_path / "p1" / CHECKPOINT, weights_only=True)["model"]
    two = torch.load(tmp_path / "p2" / CHECKPOINT, weights_only=True)["model"]
    assert set(one) == set(two) == {"prompts.context", "prompts.base"}
    for name in one:
        assert torch.allclose(one[name], two[name], atol=1e-5), name
        assert not torch.equal(one[name], torch.zeros_like(one[name]))
