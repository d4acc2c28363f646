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
from collections.abc import Awaitable, Callable
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


# One request: its status ("200", "429", a gRPC code ...) and, for a refusal to honour,
# how long to wait before the next one (None: go on at once).
Send = Callable[[], Awaitable[tuple[str, float | None]]]


async def _client(
    send: Send, stop_at: float, latencies: list[float], statuses: Counter[str]
) -> None:
    while time.perf_counter() < stop_at:
        start = time.perf_counter()
        try:
            status, retry_after = await send()
        except Exception as exc:  # a transport error is counted, and the client goes on
            statuses[type(exc).__name__] += 1
            continue
        statuses[status] += 1
        if status == "200":
            latencies.append(time.perf_counter() - start)
        elif retry_after is not None:
            await asyncio.sleep(max(0.0, min(retry_after, stop_at - time.perf_counter())))


async def closed_loop(send: Send, concurrency: int, seconds: float, warmup: int) -> LoadResult:
    """``concurrency`` clients calling ``send`` back to back for ``seconds`` (after
    ``warmup`` untimed calls); latencies of the 200s only."""
    await asyncio.gather(*(send() for _ in range(warmup)))
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    stop_at = wall_start + seconds
    await asyncio.gather(*(_client(send, stop_at, latencies, statuses) for _ in range(concurrency)))
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


async def _run(url: str, image: bytes, concurrency: int, seconds: float, warmup: int) -> LoadResult:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    files = {"image": ("bench.jpg", image, "image/jpeg")}
    async with httpx.AsyncClient(limits=limits, timeout=300) as client:

        async def send() -> tuple[str, float | None]:
            response = await client.post(url, files=files)
            refused = response.status_code in (429, 503)
            retry_after = float(response.headers.get("retry-after", "1")) if refused else None
            return str(response.status_code), retry_after

        return await closed_loop(send, concurrency, seconds, warmup)


def run_load(
    url: str, image: bytes, concurrency: int, seconds: float, warmup: int = 2
) -> LoadResult:
    """Keep ``concurrency`` requests in flight for ``seconds``; latencies of 200s only."""
    return asyncio.run(_run(url, image, concurrency, seconds, warmup))
