"""The comparison's Markdown table and figure, from the results ``compare`` writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from service.trainer.compare import COLUMNS, METHODS


def write_markdown(results: dict[str, Any], path: Path) -> None:
    """One row per method: mean ± standard deviation over the seeds, best mean in bold."""
    protocol, summary = results["protocol"], results["summary"]
    sizes = ", ".join(f"{split} {count}" for split, count in protocol["per_rank"].items())
    best = {}
    for key, _, better in COLUMNS:
        means = {m: summary[m][key]["mean"] for m in METHODS}
        badness = {
            "lower": means,
            "higher": {m: -v for m, v in means.items()},
            "level": {m: abs(v - protocol["level"]) for m, v in means.items()},
        }[better]
        best[key] = min(badness, key=badness.__getitem__)
    lines = [
        f"Synthetic ordinal set ({protocol['ranks']} ranks; images per rank: {sizes}), "
        f"backbone `{protocol['backbone']}` with random weights, seeds "
        f"{protocol['seeds']}, {protocol['epochs']} epochs, batch {protocol['batch_size']}, "
        f"lr {protocol['lr']:g}; test split, calibrated {protocol['level']:g} interval.",
        "",
        "| method | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for method in METHODS:
        cells = []
        for key, _, _ in COLUMNS:
            figure = summary[method][key]
            cell = f"{figure['mean']:.3f} ± {figure['std']:.3f}"
            cells.append(f"**{cell}**" if best[key] == method else cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def plot_comparison(results: dict[str, Any], path: Path) -> None:
    """One panel per figure: a bar per method (mean), its seeds as dots."""
    figure, axes = plt.subplots(1, len(COLUMNS), figsize=(3.2 * len(COLUMNS), 3.6))
    positions = np.arange(len(METHODS))
    for axis, (key, title, better) in zip(axes, COLUMNS, strict=True):
        means = [results["summary"][m][key]["mean"] for m in METHODS]
        axis.bar(positions, means, color=["#999999", "#4477aa", "#cc6677"], alpha=0.8)
        for index, method in enumerate(METHODS):
            seeds = [r[key] for r in results["runs"] if r["method"] == method]
            axis.plot([index] * len(seeds), seeds, "k.", markersize=5)
        axis.set_xticks(positions, list(METHODS), rotation=30)
        if better == "level":
            axis.axhline(results["protocol"]["level"], color="k", linestyle="--", linewidth=1)
        wanted = "near the dashed level" if better == "level" else f"{better} is better"
        axis.set_title(f"{title} ({wanted})", fontsize=9)
    protocol = results["protocol"]
    figure.suptitle(
        f"{protocol['backbone']} on synthetic disks, seeds {protocol['seeds']}, "
        f"{protocol['epochs']} epochs each"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
