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

import torch
from ray import serve
from starlette.requests import Request

from service.engine.device import configure_threads, resolve_placement
from service.engine.matching import rank_probabilities
from service.engine.preprocess import ImageLimits, Preprocessor
from service.engine.vision import VisionTower
from service.registry import ModelStore

STORE, PORT, MAX_BATCH = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
REPLICAS, THREADS = int(sys.argv[4]), int(sys.argv[5])


@serve.deployment(
    max_ongoing_requests=256, num_replicas=REPLICAS, ray_actor_options={"num_cpus": 0}
)
class AgeModel:
    def __init__(self) -> None:
        configure_threads(THREADS)
        store = ModelStore(STORE)
        self.age = store.load_task("age")
        backbone = store.load_backbone(self.age.manifest.backbone)
        self.tower = VisionTower(backbone, resolve_placement("cpu", "auto"))
        self.tower.warm_up()
        self.preprocess = Preprocessor(backbone.manifest.preprocess, ImageLimits(50_000_000))
        self.values = torch.tensor(self.age.manifest.values, dtype=torch.float64)

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=0.002)
    async def encode(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(self.tower.encode(torch.stack(images)))

    async def __call__(self, request: Request) -> dict[str, float]:
        async with request.form() as form:
            data = await form["image"].read()  # type: ignore[union-attr]
        feature = await self.encode(await asyncio.to_thread(self.preprocess, data))
        probabilities = rank_probabilities(
            feature[None], self.age.prototypes, self.age.manifest.logit_scale
        )
        return {"expected": float(probabilities[0].double() @ self.values)}


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
