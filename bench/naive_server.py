"""The usual FastAPI example, as a baseline: one image per forward, fp32, inference in the
handler (on the event loop), no batching. Serves the same backbone and age prototypes.

    python -m bench.naive_server STORE PORT
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI, UploadFile

from service.engine.engine_config import EngineConfig
from service.engine.factory import load_task_backbone

# The same tower and transform as ours (built by the one factory), used the naive way.
backbone, age = load_task_backbone(Path(sys.argv[1]), "age", EngineConfig("cpu", "fp32"))
model, preprocess = backbone.tower.model, backbone.preprocess
values = torch.tensor(age.manifest.values)

app = FastAPI()


@app.get("/readyz")
async def ready() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/v1/age/predict")
async def predict(image: UploadFile) -> dict[str, float]:
    pixels = preprocess(await image.read())
    with torch.no_grad():
        feature = torch.nn.functional.normalize(model(pixels[None]), dim=-1)
        probabilities = torch.softmax(age.manifest.logit_scale * feature @ age.prototypes.T, -1)
    return {"expected": float(probabilities[0] @ values)}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
