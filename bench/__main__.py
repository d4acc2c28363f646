"""``python -m bench [--quick]``: in-process limit vs our server vs baselines, one machine.

Prints the CPU's features and the layout the server chose with every candidate's figure;
writes bench.json, bench.md and bench.png under bench/results/<machine kind>/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.batch import bench_batch
from bench.limit import load_tower, measure_limit, sustained_rate
from bench.load import run_load
from bench.machine import machine, results_dir
from bench.report import layout_lines, markdown, plot
from service.engine.core.device import usable_cores
from service.engine.core.runtimes.layout import EncoderLayout
from tests import images
from tests.server_process import (
    ROOT,
    RunningServer,
    free_port,
    launch,
    rss_mb,
    start_server,
    stop_server,
)

WORK = ROOT / ".bench"
RAY_PYTHON = WORK / "ray-venv" / "bin" / "python"


def output_dir(asked: Path | None) -> Path:
    """Where a bench writes its figures (``--out``, else results/<machine kind>/), created."""
    WORK.mkdir(exist_ok=True)
    out = asked or results_dir()
    out.mkdir(parents=True, exist_ok=True)
    return out


def ensure_store(backbone: str) -> Path:
    store = WORK / f"store-{backbone}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "service.trainer",
            "demo",
            "--model-store",
            str(store),
            "--backbone",
            backbone,
            "--if-empty",
        ],
        check=True,
        cwd=ROOT,
    )
    return store


def start(name: str, store: Path, layout: EncoderLayout) -> RunningServer:
    log = WORK / f"{name}.log"
    if name == "ours":
        return start_server(store, log, env={"OCLIP_MAX_BATCH_SIZE": "0"})
    port = free_port()
    if name == "naive":
        return launch(
            [sys.executable, "-m", "bench.naive_server", str(store), str(port)], port, log
        )
    env = {"PYTHONPATH": str(ROOT), "RAY_DEDUP_LOGS": "0"}
    return launch(
        [
            str(RAY_PYTHON),
            "-m",
            "bench.ray_server",
            str(store),
            str(port),
            str(layout.batch_size),
            str(layout.workers),
            str(layout.threads or usable_cores()),
        ],
        port,
        log,
        env=env,
        timeout_s=300,
    )


@dataclass
class Plan:
    store: Path
    layout: EncoderLayout
    payloads: dict[str, bytes]
    concurrencies: list[int]
    seconds: float
    limit_now: Callable[[], float]


def bench_server(name: str, plan: Plan, results: dict[str, Any]) -> None:
    near = plan.limit_now()
    print(f"  in-process limit just before: {near:.1f} img/s", flush=True)
    began = time.perf_counter()
    server = start(name, plan.store, plan.layout)
    results["servers"][name] = {"startup_s": time.perf_counter() - began, "limit_near": near}
    try:
        for image_name, data in plan.payloads.items():
            for concurrency in plan.concurrencies:
                run = run_load(f"{server.url}/v1/age/predict", data, concurrency, plan.seconds)
                row = {"server": name, "image": image_name, "limit_near": near, **run.as_dict()}
                print(
                    f"  {name:6} {image_name:6} c={concurrency:<3} {run.throughput:6.1f} img/s "
                    f"p50 {run.p50_ms:7.0f} ms p99 {run.p99_ms:7.0f} ms {run.statuses}",
                    flush=True,
                )
                results["runs"].append(row)
        results["servers"][name]["rss_mb"] = rss_mb(server.process.pid)
    finally:
        after = plan.limit_now()
        results["servers"][name]["limit_after"] = after
        print(f"  in-process limit just after: {after:.1f} img/s", flush=True)
        stop_server(server)
        if name == "ray":
            subprocess.run([str(RAY_PYTHON.parent / "ray"), "stop", "--force"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer points, shorter runs")
    parser.add_argument("--concurrency", default="", help="comma list (default: 1,4,16,64)")
    parser.add_argument("--seconds", type=float, default=0.0, help="per load point")
    parser.add_argument("--backbone", default="ViT-B-16")
    parser.add_argument(
        "--servers", default="ours,naive,ray,batch", help="comma list (batch: local batch mode)"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: results/<kind>/")
    args = parser.parse_args()
    out = output_dir(args.out)
    store = ensure_store(args.backbone)
    samples = {"224px": images.jpeg(224, 224), "12MP": images.large_jpeg(12)}
    payloads = {"224px": samples["224px"]} if args.quick else samples
    results: dict[str, Any] = {
        "machine": machine(),
        "model": f"{args.backbone} (random weights)",
        "quick": args.quick,
        "payload_bytes": {k: len(v) for k, v in payloads.items()},
        "runs": [],
        "servers": {},
    }
    print("measuring the in-process limit …", flush=True)
    tower, preprocess = load_tower(store)
    results["limit"] = measure_limit(tower, preprocess, samples, args.quick)
    print(layout_lines(results), flush=True)
    best = EncoderLayout(**results["limit"]["best_layout"])
    plan = Plan(
        store=store,
        layout=best,
        payloads=payloads,
        concurrencies=[int(c) for c in args.concurrency.split(",") if c]
        or ([1, 16] if args.quick else [1, 4, 16, 64]),
        seconds=args.seconds or (3.0 if args.quick else 10.0),
        limit_now=lambda: sustained_rate(tower, best, 3.0 if args.quick else 6.0),
    )
    for name in args.servers.split(","):
        if name == "batch":
            print("benchmarking python -m service.batch (local mode) …", flush=True)
            results["batch"] = bench_batch(
                store,
                WORK,
                payloads,
                args.quick,
                tower,
                best,
                results["limit"]["preprocess_ms"],
            )
            continue
        if name == "ray" and not RAY_PYTHON.exists():
            print("  ray: skipped (no .bench/ray-venv: `make bench` installs it)")
            continue
        print(f"benchmarking {name} …", flush=True)
        bench_server(name, plan, results)
    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (out / "bench.md").write_text(table)
    plot(results, out / "bench.png")
    print(table)


if __name__ == "__main__":
    main()
