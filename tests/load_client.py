"""A small asynchronous load generator for the lifecycle and load tests."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class Outcome:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, 200s only
    versions: list[str] = field(default_factory=list)  # model version of each 200, in order
    started: list[float] = field(default_factory=list)  # time.monotonic() each 200 was sent
    answers: list[float] = field(default_factory=list)  # expected value of each 200
    transport_errors: list[str] = field(default_factory=list)


async def hammer(
    url: str,
    files: list,
    clients: int,
    seconds: float,
    stop_on_status: int | None = None,
    headers: dict[str, str] | None = None,
    fresh_connections: bool = False,
    stop: asyncio.Event | None = None,
) -> Outcome:
    """``clients`` loops posting ``files`` for ``seconds``; a loop ends early on
    ``stop_on_status`` (a polite client backing off) or when the server is gone. With
    ``fresh_connections`` every request opens a new connection, else each loop keeps one
    alive. ``stop``, when set, ends every loop early. Any transport error other than a
    refused connection is recorded: an accepted request that got neither an answer nor a
    clean refusal (e.g. a reset)."""
    outcome = Outcome()
    deadline = time.monotonic() + seconds

    async def post(client: httpx.AsyncClient) -> httpx.Response:
        if not fresh_connections:
            return await client.post("/v1/age/predict", files=files, headers=headers)
        async with httpx.AsyncClient(base_url=url, timeout=60) as once:
            return await once.post("/v1/age/predict", files=files, headers=headers)

    async def loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            start, sent = time.perf_counter(), time.monotonic()
            try:
                response = await post(client)
            except httpx.ConnectError:
                return  # nothing listens any more: not an accepted request
            except httpx.HTTPError as exc:
                outcome.transport_errors.append(repr(exc))
                return
            outcome.statuses[str(response.status_code)] += 1
            if response.status_code == 200:
                outcome.latencies.append(time.perf_counter() - start)
                body = response.json()
                outcome.versions.append(body["model"]["version"])
                outcome.started.append(sent)
                outcome.answers.append(body["predictions"][0]["expected"])
            if response.status_code == stop_on_status:
                return

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(*(loop(client) for _ in range(clients)))
    return outcome


@dataclass
class DrainOutcome:
    """What clients that never give up saw around a SIGTERM: answers by status, clean
    refusals of new connections, and every request lost otherwise (reset, closed without
    an answer), split by whether it was sent before or after the signal."""

    statuses: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    lost_before: list[str] = field(default_factory=list)
    lost_after: list[str] = field(default_factory=list)


async def storm(
    url: str,
    files: list,
    clients: int,
    signalled: asyncio.Event,
    gone: asyncio.Event,
    fresh_connections: bool,
    pause_s: float = 0.01,
) -> DrainOutcome:
    """``clients`` loops that post until ``gone`` is set, whatever they get: after a 503
    they post again (on a new connection when told ``Connection: close``), after a refused
    connection they try again ``pause_s`` later. A request is sent "before" when
    ``signalled`` was not yet set as it left."""
    outcome = DrainOutcome()

    async def send(client: httpx.AsyncClient) -> httpx.Response:
        if not fresh_connections:
            return await client.post("/v1/age/predict", files=files)
        async with httpx.AsyncClient(base_url=url, timeout=60) as once:
            return await once.post("/v1/age/predict", files=files)

    async def loop() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            while not gone.is_set():
                before = not signalled.is_set()
                try:
                    response = await send(client)
                except httpx.ConnectError:
                    outcome.refused += 1
                    await asyncio.sleep(pause_s)
                    continue
                except httpx.TransportError as exc:
                    (outcome.lost_before if before else outcome.lost_after).append(repr(exc))
                    continue
                outcome.statuses[str(response.status_code)] += 1

    await asyncio.gather(*(loop() for _ in range(clients)))
    return outcome
