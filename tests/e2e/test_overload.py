"""Back-pressure through the real server: a full encoder queue answers 429 + Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import images
from tests.server_process import RunningServer, serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_queue_server(
    tiny_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    # Each batch holds the queue for up to 50 ms waiting for company: others arriving meanwhile
    # find it full.
    env = {
        "OCLIP_MAX_QUEUED_IMAGES": "2",
        "OCLIP_MAX_BATCH_SIZE": "8",
        "OCLIP_MAX_BATCH_DELAY_MS": "50",
    }
    with serving(tiny_store, tmp_path_factory.mktemp("overload") / "log", env) as server:
        yield server


async def flood(url: str, count: int) -> list[httpx.Response]:
    files = [("image", ("a.png", images.png(), "image/png"))] * 2
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(
            *(client.post("/v1/age/predict", files=files) for _ in range(count))
        )


def test_full_queue_sheds_load_with_429(small_queue_server: RunningServer) -> None:
    responses = asyncio.run(flood(small_queue_server.url, 24))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}
    assert statuses.count(429) > 0
    assert statuses.count(200) > 0
    reference = None
    for response in responses:
        if response.status_code == 429:
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "overloaded"
        else:  # every accepted request got a complete, correct answer
            predictions = response.json()["predictions"]
            assert len(predictions) == 2
            reference = reference or predictions[0]["expected"]
            assert predictions[0]["expected"] == pytest.approx(reference, abs=1e-6)


def test_request_larger_than_the_queue_is_413(small_queue_server: RunningServer) -> None:
    files = [("image", ("a.png", images.png(), "image/png"))] * 3
    response = httpx.post(f"{small_queue_server.url}/v1/age/predict", files=files, timeout=60)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_many_images"
