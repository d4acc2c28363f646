"""An established batching server for comparison: Ray Serve with ``@serve.batch``, serving
the same backbone, precision, preprocessing and age prototypes as our server.

Runs in its own venv (``.bench/ray-venv``, which sees the main venv's packages after its own):

    python -m bench.ray_server STORE PORT MAX_BATCH_SIZE REPLICAS THREADS

It gets the in-process limit's best layout: REPLICAS replicas with THREADS cores each.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import torch
from ray import serve
from starlette.requests import Request

from service.engine.core.device import configure_threads
from service.engine.engine_config import EngineConfig
from service.engine.factory import load_task_backbone

STORE, PORT, MAX_BATCH = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
REPLICAS, THREADS = int(sys.argv[4]), int(sys.argv[5])


@serve.deployment(
    max_ongoing_requests=256, num_replicas=REPLICAS, ray_actor_options={"num_cpus": 0}
)
class AgeModel:
    def __init__(self) -> None:
        configure_threads(THREADS)
        backbone, self.age = load_task_backbone(Path(STORE), "age", EngineConfig(device="cpu"))
        self.tower, self.preprocess = backbone.tower, backbone.preprocess
        self.tower.warm_up()

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=0.002)
    async def encode(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(self.tower.encode(torch.stack(images)))

    async def __call__(self, request: Request) -> dict[str, float]:
        async with request.form() as form:
            data = await form["image"].read()  # type: ignore[union-attr]
        feature = await self.encode(await asyncio.to_thread(self.preprocess, data))
        (answer,) = self.age.answer(feature[None])
        return {"expected": answer.expected}


@serve.deployment
class Ready:
    async def __call__(self, request: Request) -> dict[str, str]:
        return {"status": "ready"}


if __name__ == "__main__":
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    serve.run(AgeModel.bind(), name="age", route_prefix="/v1/age/predict")
    serve.run(Ready.bind(), name="ready", route_prefix="/readyz")
    while True:
        time.sleep(3600)
