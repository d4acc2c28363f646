"""``?faces=true`` through the real app and engine, on real photographs (scikit-image's
astronaut portrait, alone, EXIF-rotated and pasted four times on a canvas).

The face centre (224, 112) of the 512 px portrait was checked by hand (tests/unit/imaging/
test_faces.py); on the canvas each pasted copy's face is the largest first.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from prometheus_client import REGISTRY

from service.engine.lifecycle import EngineHost
from service.registry import ModelStore
from tests import images
from tests.unit.api.conftest import Call, assert_error, caller, loaded_host

data = pytest.importorskip("skimage.data")

FACE_CENTRE = (224, 112)
PLACES = [(0, 0, 768), (768, 0, 614), (0, 768, 461), (481, 768, 307)]  # x, y, side
ESTIMATE = {"expected", "mode", "median", "interval"}


def jpeg_part(data_bytes: bytes, name: str = "photo.jpg") -> list:
    return [("image", (name, data_bytes, "image/jpeg"))]


def portrait() -> Image.Image:
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def portrait_jpeg() -> bytes:
    return images.encode(portrait(), "JPEG", quality=95)


@pytest.fixture(scope="module")
def canvas_jpeg() -> bytes:
    """The portrait (upscaled to 768 px) pasted at 1, 0.8 (mirrored), 0.6 and 0.4."""
    base = portrait().resize((768, 768), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (1382, 1229), (120, 120, 120))
    for (x, y, side), mirrored in zip(PLACES, (False, True, False, False), strict=True):
        copy = base.resize((side, side), Image.Resampling.LANCZOS)
        canvas.paste(ImageOps.mirror(copy) if mirrored else copy, (x, y))
    return images.encode(canvas, "JPEG", quality=85)  # under the tests' 300 kB image limit


@pytest.fixture(scope="module")
def limited(tiny_store: Path) -> Iterator[EngineHost]:
    """An engine that keeps 3 faces per image and admits at most 3 queued images."""
    from tests.unit.api.conftest import ENGINE_LIMITS

    limits = {**ENGINE_LIMITS, "max_queued_images": 3, "max_faces_per_image": 3}
    serving = loaded_host(tiny_store, **limits)
    yield serving
    serving.stop()


def limited_call(limited: EngineHost, tiny_store: Path) -> Call:
    from service.api.app import create_app
    from service.settings import Settings
    from tests.unit.api.conftest import ENGINE_LIMITS

    settings = Settings(model_store=tiny_store, **ENGINE_LIMITS, max_upload_bytes=2_000_000)
    return caller(create_app(settings, limited))


def contains(box: dict, x: float, y: float) -> bool:
    return box["x"] <= x < box["x"] + box["width"] and box["y"] <= y < box["y"] + box["height"]


def face_centre(x: int, y: int, side: int) -> tuple[float, float]:
    """Where the face centre of the copy pasted at (x, y) lies on the canvas."""
    centre_x = 512 - FACE_CENTRE[0] if x == 768 else FACE_CENTRE[0]  # the mirrored copy
    return x + centre_x * side / 512, y + FACE_CENTRE[1] * side / 512


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_portrait_gives_one_face_around_its_centre(call: Call, portrait_jpeg: bytes) -> None:
    observed = [sample(f"oclip_faces_per_image_{s}") for s in ("count", "sum")]
    detections = sample("oclip_face_detection_seconds_count")
    response = call("POST", "/v1/age/predict?faces=true", files=jpeg_part(portrait_jpeg))
    assert response.status_code == 200, response.text
    (image,) = response.json()["predictions"]
    assert image["filename"] == "photo.jpg"
    assert not ESTIMATE & set(image)  # the answers are per face
    assert image["faces_found"] == 1
    (face,) = image["faces"]
    assert contains(face["box"], *FACE_CENTRE)
    assert 0 < face["score"] <= 1
    assert ESTIMATE | {"box", "score", "distribution"} == set(face)
    assert sum(face["distribution"]["probabilities"]) == pytest.approx(1)
    assert face["interval"]["low"] <= face["median"] <= face["interval"]["high"]
    assert [sample(f"oclip_faces_per_image_{s}") for s in ("count", "sum")] == [
        observed[0] + 1,
        observed[1] + 1,
    ]
    assert sample("oclip_face_detection_seconds_count") == detections + 1


def assert_faces_largest_first(call: Call, upload: bytes, centres: list) -> None:
    """Exactly one face per centre, largest first, each box holding its face's centre."""
    response = call("POST", "/v1/age/predict?faces=true", files=jpeg_part(upload))
    assert response.status_code == 200, response.text
    (image,) = response.json()["predictions"]
    faces = image["faces"]
    assert image["faces_found"] == len(faces) == len(centres)
    for face, centre in zip(faces, centres, strict=True):
        assert contains(face["box"], *centre)
    areas = [face["box"]["width"] * face["box"]["height"] for face in faces]
    assert areas == sorted(areas, reverse=True)


def test_group_photo_gives_every_face_largest_first(call: Call, canvas_jpeg: bytes) -> None:
    assert_faces_largest_first(call, canvas_jpeg, [face_centre(*place) for place in PLACES])


# EXIF orientation -> how the photo is stored, and where the face centre lies as stored.
SIDEWAYS = {
    3: (Image.Transpose.ROTATE_180, (288, 400)),
    6: (Image.Transpose.ROTATE_90, (112, 288)),
    8: (Image.Transpose.ROTATE_270, (400, 224)),
}


@pytest.mark.parametrize("orientation", sorted(SIDEWAYS))
def test_exif_rotated_photo_gives_boxes_in_the_upright_frame(call: Call, orientation: int) -> None:
    stored_as, stored_centre = SIDEWAYS[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    upload = images.encode(portrait().transpose(stored_as), "JPEG", quality=95, exif=exif.tobytes())
    response = call("POST", "/v1/age/predict?faces=true", files=jpeg_part(upload))
    assert response.status_code == 200, response.text
    (face,) = response.json()["predictions"][0]["faces"]
    assert contains(face["box"], *FACE_CENTRE)
    assert not contains(face["box"], *stored_centre)  # not the stored (sideways) frame


def test_photo_without_a_face_gives_an_empty_list(call: Call) -> None:
    without = sample("oclip_images_without_face_total")
    coffee = images.encode(Image.fromarray(data.coffee()), "JPEG", quality=90)
    for path in ("/v1/age/predict?faces=true", "/v1/predict?tasks=age&faces=true"):
        response = call("POST", path, files=jpeg_part(coffee))
        assert response.status_code == 200, response.text
        (image,) = response.json()["predictions"]
        assert (image["faces"], image["faces_found"]) == ([], 0)
        assert "results" not in image
    assert sample("oclip_images_without_face_total") == without + 2


def test_more_faces_than_the_limit_are_truncated_visibly(
    limited: EngineHost, tiny_store: Path, canvas_jpeg: bytes
) -> None:
    call = limited_call(limited, tiny_store)
    response = call("POST", "/v1/age/predict?faces=true", files=jpeg_part(canvas_jpeg))
    assert response.status_code == 200, response.text
    (image,) = response.json()["predictions"]
    assert (len(image["faces"]), image["faces_found"]) == (3, 4)
    for face, place in zip(image["faces"], PLACES[:3], strict=True):  # the largest kept
        assert contains(face["box"], *face_centre(*place))


def test_faces_past_the_queue_cap_are_refused_with_429(
    limited: EngineHost, tiny_store: Path, canvas_jpeg: bytes, portrait_jpeg: bytes
) -> None:
    call = limited_call(limited, tiny_store)
    assert limited.engine is not None
    batcher = limited.engine.backbones["tiny-random-s0"].batcher
    other = batcher.admission.reserve(1)  # another request's image, admitted and not yet encoded
    try:
        # 1 + 1 image fit the cap of 3; the canvas's 3 kept faces would make it 1 + 3.
        path = "/v1/age/predict?faces=true"
        body = assert_error(call("POST", path, files=jpeg_part(canvas_jpeg)), 429, "overloaded")
        assert "images are ahead" in body["error"]["message"]
        assert batcher.admission.pending == 1  # the refused request gave its room back
        assert call("POST", "/v1/age/predict", files=jpeg_part(canvas_jpeg)).status_code == 200
        assert call("POST", path, files=jpeg_part(portrait_jpeg)).status_code == 200  # 1 face
    finally:
        other.release()
    assert batcher.admission.pending == 0
    # No face: the reservation shrinks to nothing and the encoder is not run.
    tower = limited.engine.backbones["tiny-random-s0"].tower
    before = tower.images_encoded
    coffee = images.encode(Image.fromarray(data.coffee()), "JPEG", quality=90)
    assert call("POST", path, files=jpeg_part(coffee)).json()["predictions"][0]["faces"] == []
    assert (tower.images_encoded, batcher.admission.pending) == (before, 0)


def test_several_tasks_encode_each_face_once(
    call: Call, host: EngineHost, canvas_jpeg: bytes
) -> None:
    assert host.engine is not None
    tower = host.engine.backbones["tiny-random-s0"].tower
    before = tower.images_encoded
    response = call("POST", "/v1/predict?tasks=age,decade&faces=true", files=jpeg_part(canvas_jpeg))
    assert response.status_code == 200, response.text
    assert tower.images_encoded - before == 4
    (image,) = response.json()["predictions"]
    assert image["faces_found"] == 4 and "results" not in image
    for face in image["faces"]:
        assert set(face) == {"box", "score", "results"}
        assert set(face["results"]) == {"age", "decade"}
        assert set(face["results"]["decade"]) >= ESTIMATE


def test_faces_agree_between_the_two_routes(call: Call, canvas_jpeg: bytes) -> None:
    one = call("POST", "/v1/age/predict?faces=true", files=jpeg_part(canvas_jpeg)).json()
    many = call("POST", "/v1/predict?tasks=age&faces=true", files=jpeg_part(canvas_jpeg)).json()
    single = one["predictions"][0]["faces"]
    multi = many["predictions"][0]["faces"]
    assert [f["box"] for f in single] == [f["box"] for f in multi]
    for a, b in zip(single, multi, strict=True):
        assert a["expected"] == pytest.approx(b["results"]["age"]["expected"], abs=1e-6)


def test_without_faces_the_answer_is_unchanged(call: Call, canvas_jpeg: bytes) -> None:
    parts = jpeg_part(canvas_jpeg)
    plain = call("POST", "/v1/age/predict", files=parts)
    assert plain.content == call("POST", "/v1/age/predict?faces=false", files=parts).content
    (image,) = plain.json()["predictions"]
    assert set(image) == {"filename", "distribution"} | ESTIMATE
    many = call("POST", "/v1/predict?tasks=age,decade", files=parts).json()
    assert set(many["predictions"][0]) == {"filename", "results"}
    assert list(many["predictions"][0]["results"]) == ["age", "decade"]


def test_models_say_whether_a_task_was_trained_on_faces(call: Call) -> None:
    body = call("GET", "/v1/models/age").json()
    assert body["crop"] is None


def test_a_registry_written_before_crops_existed_still_loads(
    tiny_store: Path, tmp_path: Path
) -> None:
    old = tmp_path / "store"
    shutil.copytree(tiny_store, old)
    for path in (old / "tasks").rglob("manifest.json"):
        manifest = json.loads(path.read_text())
        manifest.pop("crop", None)  # the field did not exist (now also left out when unset)
        path.write_text(json.dumps(manifest))
    snapshot = ModelStore(old).load_active()
    assert {task.manifest.crop for task in snapshot.tasks.values()} == {None}


def test_the_faces_flag_is_documented(call: Call) -> None:
    schema = call("GET", "/openapi.json").json()
    for path in ("/v1/{task}/predict", "/v1/predict"):
        names = [p["name"] for p in schema["paths"][path]["post"]["parameters"]]
        assert "faces" in names
