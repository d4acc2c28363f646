"""``python -m bench.runtimes [--quick]``: the runtime column of ``make bench``.

For each runtime, side by side in one run: the in-process limit of its encoder, and our
server at c = 1 and c = 16 with ``OCLIP_RUNTIME`` set to it (and to ``auto``, which
reports what it chose). The CPU's features go with the figures: they decide which runtime
wins. Writes runtimes.json and runtimes.md under bench/results/<machine kind>/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from bench.__main__ import WORK, ensure_store, output_dir
from bench.limit import layout_rates
from bench.load import run_load
from bench.machine import machine
from service.engine.core.device import configure_threads, cpu_features
from service.engine.core.runtimes.base import MeasuredEncoder
from service.engine.core.runtimes.catalog import RUNTIMES
from service.engine.engine_config import EngineConfig
from service.engine.factory import load_task_backbone
from tests import images
from tests.server_process import free_port, launch, stop_server


def encoder_limit(store: Path, runtime: str, quick: bool) -> dict[str, Any]:
    """The best sustained in-process rate of ``runtime``'s encoder over its layouts."""
    config = EngineConfig(device="cpu", runtime=runtime)
    backbone, _ = load_task_backbone(store, "age", config)
    encoder: MeasuredEncoder = backbone.tower
    encoder.warm_up((1, 4 if quick else 8))
    rates = {str(layout): rate for layout, rate in layout_rates(encoder, quick).items()}
    best = max(rates, key=rates.__getitem__)
    info = encoder.runtime_info
    return {
        "served": info.name,
        "precision": info.precision,
        "limit_img_s": rates[best],
        "best_layout": best,
        "by_layout": rates,
    }


def server_rates(store: Path, runtime: str, quick: bool) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, "-m", "service", "--model-store", str(store), "--port", str(port)]
    env = {"OCLIP_RUNTIME": runtime, "OCLIP_MAX_BATCH_SIZE": "0"}
    server = launch(command, port, WORK / f"runtime-{runtime}.log", env, timeout_s=900)
    try:
        chosen = httpx.get(f"{server.url}/v1/models/age").json()["backbone"]["runtime"]
        data = images.jpeg(224, 224)
        seconds = 3.0 if quick else 10.0
        url = f"{server.url}/v1/age/predict"
        runs = {str(c): run_load(url, data, c, seconds).as_dict() for c in (1, 16)}
    finally:
        stop_server(server)
    return {"chosen": chosen, "runs": runs}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Machine: {results['machine']}; CPU features: {', '.join(results['flags'])}; "
        f"load average before: {results['load_before']}, after: {results['load_after']}",
        f"Model: {results['model']}",
        "",
        "| OCLIP_RUNTIME | served as | in-process limit img/s | ours c=1 img/s (p50 ms) "
        "| ours c=16 img/s (p50 ms) | x torch at c=16 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    torch_c16 = results["runtimes"].get("torch", {}).get("server", {}).get("runs", {}).get("16")
    for name, row in results["runtimes"].items():
        limit = row.get("limit", {})
        server = row.get("server", {})
        chosen = server.get("chosen") or {}
        served = f"{chosen.get('name', limit.get('served', '?'))}/" + str(
            chosen.get("precision", limit.get("precision", "?"))
        )
        cells = []
        for c in ("1", "16"):
            run = server.get("runs", {}).get(c)
            cells.append(_cell(run))
        run16 = server.get("runs", {}).get("16")
        ratio = (
            f"{run16['throughput'] / torch_c16['throughput']:.2f}"
            if run16 and torch_c16 and torch_c16["throughput"] > 0
            else "—"
        )
        limit_cell = f"{limit['limit_img_s']:.1f} ({limit['best_layout']})" if limit else "—"
        lines.append(f"| {name} | {served} | {limit_cell} | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines) + "\n"


def _cell(run: dict[str, Any] | None) -> str:
    return "not run" if run is None else f"{run['throughput']:.1f} ({run['p50_ms']:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.runtimes", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer batch sizes")
    parser.add_argument("--backbone", default="ViT-B-16")
    parser.add_argument("--runtimes", default="torch,onnxruntime,openvino,auto")
    parser.add_argument("--out", type=Path, default=None, help="default: results/<kind>/")
    args = parser.parse_args()
    out = output_dir(args.out)
    store = ensure_store(args.backbone)
    configure_threads(0)
    results: dict[str, Any] = {
        "machine": machine(),
        "flags": cpu_features(),
        "model": f"{args.backbone} (random weights)",
        "quick": args.quick,
        "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "runtimes": {},
    }
    for name in args.runtimes.split(","):
        if name in RUNTIMES and RUNTIMES[name].missing():
            print(f"{name}: skipped ({RUNTIMES[name].missing()})", flush=True)
            continue
        row: dict[str, Any] = {}
        if name != "auto":
            row["limit"] = encoder_limit(store, name, args.quick)
            print(f"{name}: in-process limit {row['limit']['limit_img_s']:.1f} img/s", flush=True)
        row["server"] = server_rates(store, name, args.quick)
        for c, run in row["server"]["runs"].items():
            print(f"{name}: ours c={c} {run['throughput']:.1f} img/s {run['statuses']}", flush=True)
        results["runtimes"][name] = row
    results["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    (out / "runtimes.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (out / "runtimes.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
