"""Train on face crops, publish, serve: ``faces=true`` over the API scores exactly what
``evaluate --crop faces`` scores (the same detector, crop and transform on both sides)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.api.app import create_app
from service.registry import ModelStore
from service.settings import Settings
from service.trainer.evaluate import evaluate_published
from service.trainer.fit_config import TrainConfig
from service.trainer.loop import fit
from service.trainer.publish import publish_trained
from tests import images
from tests.unit.api.conftest import caller, loaded_host

data = pytest.importorskip("skimage.data")
pytestmark = pytest.mark.slow
RANKS = 4
PATH = "/v1/shade/predict?faces=true&distribution=false"


def write_photos(root: Path, count: int, seed: int) -> Path:
    """The portrait pasted at a random place and scale on a gradient background; its rank
    (synthetic) darkens the portrait, so the crops carry it."""
    rng = np.random.default_rng(seed)
    portrait = np.asarray(Image.fromarray(data.astronaut()), dtype=np.float32)
    lines = []
    for number in range(count):
        rank = number % RANKS
        side = int(rng.integers(240, 330))
        face = Image.fromarray((portrait * (1 - 0.2 * rank)).astype(np.uint8))
        canvas = images.gradient(400, 360, seed=seed * 100 + number)
        x, y = int(rng.integers(0, 400 - side)), int(rng.integers(0, 360 - side))
        canvas.paste(face.resize((side, side), Image.Resampling.LANCZOS), (x, y))
        path = root / f"{seed}-{number}.jpg"
        canvas.save(path, quality=92)
        lines.append(f"{path.name} {rank}\n")
    listing = root / f"list-{seed}.txt"
    listing.write_text("".join(lines))
    return listing


def test_trained_on_faces_then_served_with_faces_gives_the_evaluated_mae(
    tmp_path: Path,
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    train, val = write_photos(photos, 12, seed=1), write_photos(photos, 8, seed=2)
    config = TrainConfig(
        train=train,
        val=val,
        images_root=photos,
        task="shade",
        ranks=f"0:{RANKS - 1}",
        backbone="tiny",
        num_context=2,
        epochs=3,
        batch_size=4,
        lr=3e-3,
        crop="faces",
        output=tmp_path / "run",
    )
    result = fit(config)
    store = ModelStore(tmp_path / "store")
    manifest = publish_trained(
        store, result.built, result.model, config, result.scale, result.best_metrics
    )
    assert manifest.crop is not None
    assert manifest.crop.model_dump() == {"detector": "mtcnn", "margin": 0.5, "size": 32}
    offline = evaluate_published(store.root, "shade", val, photos, crop="faces")

    host = loaded_host(store.root, precision="fp32")
    try:
        call = caller(create_app(Settings(model_store=store.root), host))
        errors = []
        for line in val.read_text().splitlines():
            name, rank = line.split()
            upload = [("image", (name, (photos / name).read_bytes(), "image/jpeg"))]
            response = call("POST", PATH, files=upload)
            assert response.status_code == 200, response.text
            (image,) = response.json()["predictions"]
            assert image["faces_found"] >= 1  # a gradient may hold a false one; largest first
            errors.append(abs(image["faces"][0]["expected"] - int(rank)))
        served = call("GET", "/v1/models/shade").json()
    finally:
        host.stop()
    assert len(errors) == 8
    assert float(np.mean(errors)) == pytest.approx(offline["mae_expected"], abs=1e-4)
    assert served["crop"] == {"detector": "mtcnn", "margin": 0.5, "size": 32}
