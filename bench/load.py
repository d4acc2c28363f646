"""A closed-loop HTTP load generator: N concurrent clients posting the same image.

Each client behaves as a production client should: after a 429 or 503 it waits the
``Retry-After`` the server sent before posting again. (A client that re-posts at once turns
a refusal into a flood: with 12 MP uploads on this 2-core machine, the load generator's own
re-encoding of each upload took the cores the encoder needed.)
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass

import httpx
import numpy as np


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    completed: int
    statuses: dict[str, int]
    throughput: float  # successful responses per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    client_cpu: float  # share of one core the load generator itself used

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def _client(
    client: httpx.AsyncClient,
    url: str,
    image: bytes,
    stop_at: float,
    latencies: list[float],
    statuses: Counter[str],
) -> None:
    files = {"image": ("bench.jpg", image, "image/jpeg")}
    while time.perf_counter() < stop_at:
        start = time.perf_counter()
        try:
            response = await client.post(url, files=files)
            statuses[str(response.status_code)] += 1
            if response.status_code == 200:
                latencies.append(time.perf_counter() - start)
            elif response.status_code in (429, 503):
                retry_after = float(response.headers.get("retry-after", "1"))
                await asyncio.sleep(max(0.0, min(retry_after, stop_at - time.perf_counter())))
        except httpx.HTTPError as exc:
            statuses[type(exc).__name__] += 1


async def _run(url: str, image: bytes, concurrency: int, seconds: float, warmup: int) -> LoadResult:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=300) as client:
        files = {"image": ("bench.jpg", image, "image/jpeg")}
        await asyncio.gather(*(client.post(url, files=files) for _ in range(warmup)))
        latencies: list[float] = []
        statuses: Counter[str] = Counter()
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        stop_at = wall_start + seconds
        await asyncio.gather(
            *(_client(client, url, image, stop_at, latencies, statuses) for _ in range(concurrency))
        )
        wall = time.perf_counter() - wall_start
        cpu = time.process_time() - cpu_start
    values = np.array(latencies or [float("nan")]) * 1000
    return LoadResult(
        concurrency=concurrency,
        seconds=round(wall, 2),
        completed=len(latencies),
        statuses=dict(statuses),
        throughput=len(latencies) / wall,
        p50_ms=float(np.percentile(values, 50)),
        p95_ms=float(np.percentile(values, 95)),
        p99_ms=float(np.percentile(values, 99)),
        client_cpu=cpu / wall,
    )


def run_load(
    url: str, image: bytes, concurrency: int, seconds: float, warmup: int = 2
) -> LoadResult:
    """Keep ``concurrency`` requests in flight for ``seconds``; latencies of 200s only."""
    return asyncio.run(_run(url, image, concurrency, seconds, warmup))
