"""``python -m service.trainer compare``: CoOp, OrdinalCLIP and NumCLIP on one protocol.

Per seed, one synthetic ordinal set (train / val / calibration / test) and one random-weight
backbone; every method gets the same data, seed and budget (epochs, batch, learning rate,
context length). Each is fit on train (best epoch on val), published, calibrated on the
calibration split, and measured on the test split through the server's engine code
(``evaluate``), so the table's figures are what the server would answer.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from service.engine import cpu_features, cpu_signature
from service.registry import ModelStore
from service.trainer.calibration import calibrate_published
from service.trainer.compare_protocol import Protocol
from service.trainer.evaluate import evaluate_published
from service.trainer.fit_config import TrainConfig
from service.trainer.loop import fit
from service.trainer.publish import publish_trained
from service.trainer.synthetic import write_synthetic

METHODS = {"CoOp": "plain", "OrdinalCLIP": "rank", "NumCLIP": "numclip"}
# (figure key in evaluate's report, column title, which way is better: "higher", "lower",
# or "level": closest to the promised interval level)
COLUMNS = [
    ("mae_expected", "MAE (expected)", "lower"),
    ("mae_argmax", "MAE (arg-max)", "lower"),
    ("accuracy_argmax", "accuracy", "higher"),
    ("off_by_one_accuracy", "off-by-one", "higher"),
    ("nll", "NLL", "lower"),
    ("coverage", "coverage (calibrated)", "level"),
    ("ordinality", "ordinality", "higher"),
]
TASK = "count"


def run_method(
    protocol: Protocol, method: str, seed: int, data: dict[str, Path], work: Path
) -> dict[str, Any]:
    """Fit, publish, calibrate and evaluate one method on one seed's data."""
    root = data["train"].parent
    store = work / f"store-{method}"
    config = TrainConfig(
        train=data["train"],
        val=data["val"],
        images_root=root,
        task=TASK,
        ranks=f"0:{protocol.ranks - 1}",
        backbone=protocol.backbone,
        prompt=METHODS[method],  # type: ignore[arg-type]
        num_context=protocol.num_context,
        coarse_bins=protocol.coarse_bins,
        epochs=protocol.epochs,
        batch_size=protocol.batch_size,
        lr=protocol.lr,
        seed=seed,
        output=work / f"run-{method}",
    )
    started = time.perf_counter()
    result = fit(config)
    seconds = time.perf_counter() - started
    metrics = {**result.best_metrics, "best_epoch": result.best_epoch}
    publish_trained(ModelStore(store), result.built, result.model, config, result.scale, metrics)
    calibrate_published(store, TASK, data["calibration"], root, protocol.level)
    figures = evaluate_published(store, TASK, data["test"], root, level=protocol.level)
    row: dict[str, Any] = {"method": method, "seed": seed}
    row.update({key: figures[key] for key, _, _ in COLUMNS})
    row.update(best_epoch=result.best_epoch, fit_seconds=round(seconds, 2))
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per method and figure: mean and (sample) standard deviation over the seeds."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        summary[method] = {}
        for key, _, _ in COLUMNS:
            values = [float(r[key]) for r in mine]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[method][key] = {"mean": statistics.fmean(values), "std": spread}
    return summary


def run_compare(protocol: Protocol, out: Path, work: Path | None = None) -> dict[str, Any]:
    """Every method on every seed; writes ``compare.json``, ``compare.md``, ``compare.png``."""
    from service.trainer.compare_report import plot_comparison, write_markdown

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        base = work or Path(scratch)
        for seed in protocol.seeds:
            folder = base / f"seed-{seed}"
            sizes, size = protocol.per_rank, protocol.image_size
            data = write_synthetic(folder / "data", protocol.ranks, sizes, size, seed)
            for method in METHODS:
                rows.append(run_method(protocol, method, seed, data, folder))
    results = {
        "protocol": asdict(protocol),
        "data": "synthetic disks (service/trainer/synthetic.py): rank = disk size",
        "machine": {**cpu_signature(), "features": cpu_features(), "torch": torch.__version__},
        "columns": {key: title for key, title, _ in COLUMNS},
        "summary": summarise(rows),
        "runs": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, out / "compare.md")
    plot_comparison(results, out / "compare.png")
    return results
