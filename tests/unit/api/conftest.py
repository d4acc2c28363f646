"""In-process API tests: the real app and a real engine on the tiny model, through httpx's
ASGI transport (no server process, no lifespan: the host is loaded once per session)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.api.app import create_app
from service.engine.factory import load_engine
from service.engine.lifecycle import EngineHost
from service.settings import Settings

ENGINE_LIMITS = {
    "max_image_bytes": 300_000,
    "max_image_pixels": 4_000_000,
    "max_queued_images": 8,
    "max_batch_size": 4,
}


def loaded_host(store: Path, **settings: Any) -> EngineHost:
    config = Settings(model_store=store, **settings).engine_config()
    host = EngineHost(lambda: load_engine(store, config))
    host.start_loading()
    host.wait_loaded()
    return host


@pytest.fixture(scope="session")
def host(tiny_store: Path) -> Iterator[EngineHost]:
    serving = loaded_host(tiny_store, **ENGINE_LIMITS)
    yield serving
    serving.stop()


Call = Callable[..., httpx.Response]


def caller(app: FastAPI) -> Call:
    """``call(method, path, **httpx kwargs)`` through the ASGI transport, synchronously."""

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(run())

    return call


@pytest.fixture
def make_app(tiny_store: Path, host: EngineHost) -> Callable[..., FastAPI]:
    """An app on the shared engine with these HTTP-level settings."""

    def make(**settings: Any) -> FastAPI:
        return create_app(Settings(model_store=tiny_store, **ENGINE_LIMITS, **settings), host)

    return make


@pytest.fixture
def call(make_app: Callable[..., FastAPI]) -> Call:
    return caller(make_app(max_images_per_request=4, max_upload_bytes=2_000_000))


def image_parts(*files: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(files)]


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    assert response.headers["x-request-id"]
    return body


def while_one_trickles(
    app: FastAPI, path: str, first: list[bytes], headers: dict[str, str], **second: Any
) -> tuple[httpx.Response, httpx.Response]:
    """A POST to ``path`` whose body parts ``first`` arrive a second apart and, while it is
    being received, a second POST (``second``: httpx kwargs): both responses."""

    async def trickle() -> AsyncIterator[bytes]:
        for index, part in enumerate(first):
            if index:
                await asyncio.sleep(1.0)
            yield part

    async def run() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            slow = asyncio.ensure_future(client.post(path, content=trickle(), headers=headers))
            await asyncio.sleep(0.3)
            other = await client.post(path, **second)
            return await slow, other

    return asyncio.run(run())
