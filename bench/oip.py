"""``python -m bench.oip [--quick]``: the Open Inference Protocol beside v1, on one server.

Triton's ``perf_analyzer`` is not on PyPI for this platform (the ``perf-analyzer`` name
holds a 0.1.0 placeholder without the binary), so the load comes from tritonclient's own
asyncio clients (``tritonclient.http.aio``, ``tritonclient.grpc.aio``) in the same
closed loop as v1's (bench/load.py: back-to-back requests, ``Retry-After`` honoured), at
c = 1 and 16, posting the same 224 px JPEG to the same server: v1 multipart, v2 REST
(binary tensors, as tritonclient sends them) and v2 gRPC. This VM's speed drifts within
seconds, so the three take turns in rounds (ABC, then CBA, ...) and each figure is the
median of its rounds. Writes oip.json and oip.md under bench/results/<machine kind>/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.__main__ import WORK, ensure_store, output_dir
from bench.load import LoadResult, closed_loop, run_load
from bench.machine import machine
from service.engine.core.device import cpu_features
from tests import images
from tests.server_process import free_port, launch, stop_server

TASK = "age"
REFUSALS = {"429", "503", "StatusCode.RESOURCE_EXHAUSTED", "StatusCode.UNAVAILABLE"}


def refusal(exc: Exception) -> tuple[str, float | None]:
    """A tritonclient error as a status; refusals wait a second (tritonclient does not
    expose Retry-After)."""
    status = str(getattr(exc, "status", lambda: type(exc).__name__)())
    return status, 1.0 if status in REFUSALS else None


async def v2_load(
    kind: str, address: str, image: bytes, concurrency: int, seconds: float
) -> LoadResult:
    from tritonclient.utils import InferenceServerException

    if kind == "rest":
        import tritonclient.http.aio as triton
    else:
        import tritonclient.grpc.aio as triton  # type: ignore[no-redef]
    client = triton.InferenceServerClient(address)
    tensor = triton.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image], dtype=object))

    async def send() -> tuple[str, float | None]:
        try:
            await client.infer(TASK, [tensor])
        except InferenceServerException as exc:
            return refusal(exc)
        return "200", None

    try:
        return await closed_loop(send, concurrency, seconds, warmup=2)
    finally:
        await client.close()


def cell(rounds: list[dict[str, Any]]) -> str:
    def median(key: str) -> float:
        return statistics.median(run[key] for run in rounds)

    return f"{median('throughput'):.2f} ({median('p50_ms'):.0f} / {median('p99_ms'):.0f})"


def take_turns(
    runs: dict[str, Callable[[int], LoadResult]], concurrency: int, rounds: int
) -> dict[str, list[dict[str, Any]]]:
    """Every protocol once per round, the order reversed each round."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    names = list(runs)
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            results[name].append(runs[name](concurrency).as_dict())
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Machine: {results['machine']}; CPU features: {', '.join(results['flags'])}; "
        f"load average before: {results['load_before']}, after: {results['load_after']}",
        f"Model: {results['model']}; one server for all; {results['rounds']} rounds of "
        f"{results['seconds']:g} s per point, medians of the rounds",
        "",
        "| protocol | c=1 img/s (p50 / p99 ms) | c=16 img/s (p50 / p99 ms) | c=16 statuses |",
        "|---|---:|---:|---|",
    ]
    for name, runs in results["protocols"].items():
        counts: dict[str, int] = {}
        for run in runs["16"]:
            for status, count in run["statuses"].items():
                counts[status] = counts.get(status, 0) + count
        statuses = ", ".join(f"{k}: {v}" for k, v in counts.items())
        lines.append(f"| {name} | {cell(runs['1'])} | {cell(runs['16'])} | {statuses} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.oip", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s, not 4 of 6 s")
    parser.add_argument("--backbone", default="ViT-B-16")
    parser.add_argument("--store", type=Path, help="a registry to serve (default: the demo)")
    parser.add_argument("--out", type=Path, default=None, help="default: results/<kind>/")
    args = parser.parse_args()
    out = output_dir(args.out)
    store = args.store or ensure_store(args.backbone)
    seconds, rounds = (3.0, 2) if args.quick else (6.0, 4)
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "service", "--model-store", str(store), "--port", str(port)]
    env = {"OCLIP_GRPC_PORT": str(grpc_port), "OCLIP_MAX_BATCH_SIZE": "0"}
    results: dict[str, Any] = {
        "machine": machine(),
        "flags": cpu_features(),
        "model": f"{args.backbone} (random weights)" if args.store is None else str(store),
        "seconds": seconds,
        "rounds": rounds,
        "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "protocols": {},
    }
    server = launch(command, port, WORK / "oip.log", env, timeout_s=900)
    image = images.jpeg(224, 224)
    address = server.url.removeprefix("http://")
    grpc_address = f"127.0.0.1:{grpc_port}"
    runs: dict[str, Callable[[int], LoadResult]] = {
        "v1 multipart (httpx)": lambda c: run_load(
            f"{server.url}/v1/{TASK}/predict", image, c, seconds
        ),
        "v2 REST (tritonclient.http)": lambda c: asyncio.run(
            v2_load("rest", address, image, c, seconds)
        ),
        "v2 gRPC (tritonclient.grpc)": lambda c: asyncio.run(
            v2_load("grpc", grpc_address, image, c, seconds)
        ),
    }
    try:
        by_concurrency = {str(c): take_turns(runs, c, rounds) for c in (1, 16)}
    finally:
        stop_server(server)
    results["protocols"] = {
        name: {c: per_c[name] for c, per_c in by_concurrency.items()} for name in runs
    }
    results["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    (out / "oip.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "oip.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
