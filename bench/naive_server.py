"""The usual FastAPI example, as a baseline: one image per forward, fp32, inference in the
handler (on the event loop), no batching. Serves the same backbone and age prototypes.

    python -m bench.naive_server STORE PORT
"""

from __future__ import annotations

import io
import sys

import torch
import uvicorn
from fastapi import FastAPI, UploadFile
from open_clip.model import _build_vision_tower
from open_clip.transform import image_transform
from PIL import Image

from service.registry import ModelStore

store = ModelStore(sys.argv[1])
age = store.load_task("age")
backbone = store.load_backbone(age.manifest.backbone)
model = _build_vision_tower(backbone.manifest.embed_dim, backbone.manifest.vision_cfg)
model.load_state_dict(backbone.state_dict)
model.eval()
preprocess = image_transform(backbone.manifest.preprocess.image_size, is_train=False)
values = torch.tensor(age.manifest.values)

app = FastAPI()


@app.get("/readyz")
async def ready() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/v1/age/predict")
async def predict(image: UploadFile) -> dict[str, float]:
    picture = Image.open(io.BytesIO(await image.read())).convert("RGB")
    with torch.no_grad():
        feature = torch.nn.functional.normalize(model(preprocess(picture)[None]), dim=-1)
        probabilities = torch.softmax(age.manifest.logit_scale * feature @ age.prototypes.T, -1)
    return {"expected": float(probabilities[0] @ values)}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
