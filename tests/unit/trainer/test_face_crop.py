"""``--crop faces``: the trainer trains on the crops the server's face code would cut."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from service.imaging import ImageLimits, Preprocessor
from service.registry.manifest import Preprocess
from service.trainer.__main__ import build_parser, main
from service.trainer.data import DataError, Sample
from service.trainer.evaluate import evaluate_published
from service.trainer.face_crops import crop_samples, face_crop_samples, face_cropper
from service.trainer.fit_config import load_config
from tests import images

data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A sideways JPEG with EXIF orientation 6, a mirrored PNG and a faceless gradient."""
    root = tmp_path_factory.mktemp("photos")
    portrait = Image.fromarray(data.astronaut())
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = portrait.transpose(Image.Transpose.ROTATE_90)
    paths = {
        "sideways": root / "sideways.jpg",
        "mirrored": root / "mirrored.png",
        "gradient": root / "gradient.png",
    }
    paths["sideways"].write_bytes(images.encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    ImageOps.mirror(portrait).save(paths["mirrored"])
    images.gradient(320, 240).save(paths["gradient"])
    return paths


def test_crops_equal_the_servers_and_faceless_images_are_counted(
    photos: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    samples = [Sample(photos[name], rank) for rank, name in enumerate(photos)]
    cropper = face_cropper(margin=0.5, size=224)
    with caplog.at_level(logging.WARNING):
        kept = face_crop_samples(samples, tmp_path, cropper)
    assert [s.rank for s in kept] == [0, 1]
    assert "1 of 3 images have no face" in caplog.text
    server = Preprocessor(
        Preprocess(image_size=224, mean=(0.5,) * 3, std=(0.5,) * 3), ImageLimits(max_pixels=10**8)
    )
    for sample, crop in zip(samples, kept, strict=False):
        served = cropper.largest(server.decode(sample.path.read_bytes()))
        assert served is not None
        with Image.open(crop.path) as saved:
            assert saved.size == (224, 224)
            assert saved.convert("RGB").tobytes() == served.tobytes()


def test_no_face_anywhere_is_an_error(photos: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no face"):
        face_crop_samples([Sample(photos["gradient"], 0)], tmp_path, face_cropper(0.5, 64))


def test_crop_none_leaves_the_samples_alone(photos: dict[str, Path], tmp_path: Path) -> None:
    samples = [Sample(photos["gradient"], 0)]
    assert crop_samples("none", 0.5, 64, tmp_path, train=samples) == [samples]
    assert not any(tmp_path.iterdir())


def test_crop_flags(tmp_path: Path) -> None:
    parser = build_parser()
    required = ["--train", "t", "--val", "v", "--task", "age", "--ranks", "0:1"]
    fit_args = parser.parse_args(["fit", *required, "--crop", "faces", "--crop-margin", "0.3"])
    config = load_config(fit_args)
    assert (config.crop, config.crop_margin) == ("faces", 0.3)
    evaluate = ["evaluate", "--model-store", "s", "--task", "age", "--list", "l"]
    assert parser.parse_args([*evaluate, "--crop", "faces"]).crop == "faces"
    with pytest.raises(SystemExit):
        parser.parse_args([*evaluate, "--crop", "bodies"])


@pytest.mark.slow
def test_fit_then_evaluate_on_face_crops(photos: dict[str, Path], tmp_path: Path) -> None:
    """fit --crop faces publishes; evaluate --crop faces scores the very crops fit trained on."""
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{path} {rank}\n" for rank, path in enumerate(photos.values())))
    store, run = tmp_path / "store", tmp_path / "run"
    flags = "--ranks 0:2 --backbone tiny --num-context 2 --epochs 1 --batch-size 2 --crop faces"
    paths = ["--train", str(listing), "--val", str(listing), "--output", str(run)]
    main(["fit", *paths, "--task", "face", *flags.split(), "--model-store", str(store)])
    crops = sorted((run / "face-crops" / "train").glob("*.png"))
    assert len(crops) == 2  # the gradient has no face
    assert json.loads((run / "config.json").read_text())["crop"] == "faces"
    on_faces = evaluate_published(store, "face", listing, Path("."), crop="faces")
    crop_list = tmp_path / "crops.txt"
    crop_list.write_text("".join(f"{path} {rank}\n" for rank, path in enumerate(crops)))
    assert on_faces == evaluate_published(store, "face", crop_list, Path("."))
