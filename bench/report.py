"""Turning bench results into a markdown table and a PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from service.engine.core.runtimes.layout import EncoderLayout

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _limit_around(results: dict[str, Any], server: str) -> float:
    """The in-process limit measured before and after this server's runs, averaged: the
    machine's speed drifts, so each server is compared with the limit of its own minutes."""
    info = results["servers"][server]
    return (info["limit_near"] + info["limit_after"]) / 2


def layout_lines(results: dict[str, Any]) -> str:
    """What the server chose at start-up (runtime, precision, layout, every candidate's
    short timing) and the limit's own sustained figure per layout of the same tower."""
    limit = results["limit"]
    served = limit["served_layout"]
    chosen = str(EncoderLayout(served["workers"], served["threads"], served["batch_size"]))
    candidates = ", ".join(f"{k}: {r:.1f}" for k, r in served["candidates"].items())
    by_layout = ", ".join(f"{k}: {r:.1f}" for k, r in limit["throughput_by_layout"].items())
    return "\n".join(
        [
            f"Machine: {results['machine']}",
            f"Model: {results['model']}; served as {limit['runtime']} on {limit['device']}",
            f"Server's layout (workers x threads, batch): {chosen}, measured at start-up "
            f"{served['img_s']:.1f} img/s{' (cached)' if served['cached'] else ''}; "
            f"candidates: {candidates}",
            f"In-process limit: {limit['limit_img_s']:.1f} img/s sustained (by layout: "
            f"{by_layout}); one forward {limit['forward_batch1_ms']:.0f} ms; preprocessing "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in limit["preprocess_ms"].items()),
        ]
    )


def markdown(results: dict[str, Any]) -> str:
    header = "| server | image | concurrency | img/s | x limit | p50 ms | p95 ms | p99 ms "
    lines = [
        *layout_lines(results).split("\n"),
        "",
        header + "| statuses | client CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for run in results["runs"]:
        ratio = run["throughput"] / _limit_around(results, run["server"])
        lines.append(
            f"| {run['server']} | {run['image']} | {run['concurrency']} | {run['throughput']:.1f} "
            f"| {ratio:.2f} | {run['p50_ms']:.0f} "
            f"| {run['p95_ms']:.0f} | {run['p99_ms']:.0f} | {run['statuses']} "
            f"| {run['client_cpu']:.0%} |"
        )
    lines += [
        "",
        "| server | in-process limit before / after its runs (img/s) | start-up to ready (s) "
        "| RSS after load (MB) |",
        "|---|---:|---:|---:|",
    ]
    for name, info in results["servers"].items():
        lines.append(
            f"| {name} | {info['limit_near']:.1f} / {info['limit_after']:.1f} "
            f"| {info['startup_s']:.1f} | {info.get('rss_mb', float('nan')):.0f} |"
        )
    lines += _batch_lines(results)
    return "\n".join(lines) + "\n"


def _batch_lines(results: dict[str, Any]) -> list[str]:
    """``python -m service.batch`` in local mode: end to end, and interleaved with the limit."""
    batch = results.get("batch")
    if not batch:
        return []
    lines = [
        "",
        "Batch scoring, local mode: the CLI end to end; then its scoring code in segments "
        "interleaved with equally long spells of the in-process limit, in alternating order "
        "after one untimed segment. x limit: the median of the rounds' ratios and the ratio "
        "of the totals, each with a 90% bootstrap interval over the rounds; the control row "
        "is the limit interleaved with itself in the same way (a true 1.00, as this machine "
        "measures it). The ceiling is the limit with this image's preprocessing sharing the "
        f"{batch['cores']} cores; encoder busy: the share of the time the engine's workers "
        "spent in forward passes, from its own metrics; encoder CPU: their threads' CPU time "
        "over their cores' time; pipeline: the process's other CPU time (reading, decoding, "
        "preprocessing, batching, matching, writing) per image",
        "",
        "| image | CLI images | CLI img/s | start-up s | rounds x images | interleaved img/s "
        "| limit img/s | x limit, median (90%) | x limit, totals (90%) | x ceiling "
        "| encoder busy | encoder CPU | pipeline CPU ms/img | batch (mean/max) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, run in batch["runs"].items():
        ratios = (
            _with_interval(run["x_limit_median"], run["x_limit_median_90ci"])
            + " | "
            + _with_interval(run["x_limit"], run["x_limit_90ci"])
        )
        if "batch_img_s" not in run:  # the control
            lines.append(
                f"| {name} | - | - | - | {run['rounds']} x {run['spell_s']:.1f} s | - | - "
                f"| {ratios} | - | - | - | - | - |"
            )
            continue
        cli = (
            f"{run['images']} | {run['img_s']:.1f} | {run['startup_s']:.1f}"
            if "img_s" in run
            else "- | - | -"
        )
        ceiling = run["batch_img_s"] / run["ceiling_img_s"] if "ceiling_img_s" in run else None
        lines.append(
            f"| {name} | {cli} | {run['rounds']} x {run['segment_images']} "
            f"| {run['batch_img_s']:.1f} | {run['limit_img_s']:.1f} | {ratios} "
            f"| {'-' if ceiling is None else f'{ceiling:.2f}'} "
            f"| {run['encoder_busy']:.0%} ({run['workers']} worker{'s' * (run['workers'] > 1)}) "
            f"| {run['encoder_cpu_share']:.0%} | {run['pipeline_cpu_ms']:.1f} "
            f"| {run['mean_batch']:.1f} / {run['batch_size']} |"
        )
    return lines


def _with_interval(value: float, interval: tuple[float, float]) -> str:
    return f"{value:.2f} ({interval[0]:.2f}-{interval[1]:.2f})"


def plot(results: dict[str, Any], path: Path) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in results["runs"]:
        groups.setdefault((run["server"], run["image"]), []).append(run)
    for (server, image), runs in groups.items():
        style = "-o" if image == "224px" else "--s"
        xs = [r["concurrency"] for r in runs]
        left.plot(xs, [r["throughput"] for r in runs], style, label=f"{server} {image}")
        right.plot(xs, [r["p99_ms"] for r in runs], style, label=f"{server} {image}")
    limits = [
        v for info in results["servers"].values() for v in (info["limit_near"], info["limit_after"])
    ]
    if limits:
        left.axhline(
            sum(limits) / len(limits), color="grey", linestyle=":", label="in-process limit (mean)"
        )
    for axis, title in ((left, "throughput (img/s)"), (right, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    right.set_yscale("log")
    if left.get_legend_handles_labels()[0]:
        left.legend(fontsize=7)
    figure.suptitle(f"{results['model']} on {results['machine']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
