"""The v1 API through a real uvicorn server in a subprocess."""

from __future__ import annotations

import json
import math
import time

import httpx
import pytest

from tests import images
from tests.conftest import RunningServer

pytestmark = pytest.mark.slow


def post_images(
    client: httpx.Client, path: str, files: list[tuple[str, bytes, str]], **params: str
) -> httpx.Response:
    parts = [("image", (name, data, content_type)) for name, data, content_type in files]
    return client.post(path, files=parts, params=params)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in response.text


def assert_valid_prediction(prediction: dict, values: list[float]) -> None:
    probabilities = prediction["distribution"]["probabilities"]
    assert prediction["distribution"]["values"] == values
    assert math.isclose(sum(probabilities), 1.0, abs_tol=1e-6)
    expected = sum(p * v for p, v in zip(probabilities, values, strict=True))
    assert math.isclose(prediction["expected"], expected, rel_tol=1e-6)
    assert prediction["mode"] == values[max(range(len(values)), key=probabilities.__getitem__)]
    interval = prediction["interval"]
    assert interval["level"] == 0.9
    assert interval["low"] <= prediction["median"] <= interval["high"]


def test_health_and_readiness(server: RunningServer) -> None:
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize("variant", sorted(images.variants()))
def test_predict_every_format_and_mode(server: RunningServer, variant: str) -> None:
    data, content_type = images.variants()[variant]
    with server.client() as client:
        response = post_images(client, "/v1/age/predict", [(f"{variant}.img", data, content_type)])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task"] == "age"
    assert body["model"] == {"task": "age", "version": "v1", "backbone": "tiny-random-s0"}
    (prediction,) = body["predictions"]
    assert prediction["filename"] == f"{variant}.img"
    assert_valid_prediction(prediction, [float(v) for v in range(101)])
    assert response.headers["x-request-id"]


def test_twelve_megapixel_jpeg(server: RunningServer) -> None:
    with server.client() as client:
        response = post_images(
            client, "/v1/decade/predict", [("big.jpg", images.large_jpeg(), "image/jpeg")]
        )
    assert response.status_code == 200, response.text
    prediction = response.json()["predictions"][0]
    assert prediction["distribution"]["labels"] == ["1930s", "1940s", "1950s", "1960s", "1970s"]


def test_several_images_keep_request_order(server: RunningServer) -> None:
    files = [(f"img{i}.png", images.png(seed=i), "image/png") for i in range(3)]
    with server.client() as client:
        together = post_images(client, "/v1/aesthetics/predict", files).json()["predictions"]
        alone = [
            post_images(client, "/v1/aesthetics/predict", [f]).json()["predictions"][0]
            for f in files
        ]
    assert [p["filename"] for p in together] == ["img0.png", "img1.png", "img2.png"]
    for batched, single in zip(together, alone, strict=True):
        assert batched["expected"] == pytest.approx(single["expected"], abs=1e-3)


def test_distribution_can_be_left_out(server: RunningServer) -> None:
    with server.client() as client:
        response = post_images(
            client,
            "/v1/age/predict",
            [("a.jpg", images.jpeg(), "image/jpeg")],
            distribution="false",
        )
    prediction = response.json()["predictions"][0]
    assert "distribution" not in prediction
    assert {"expected", "mode", "median", "interval"} <= prediction.keys()


def test_raw_image_body(server: RunningServer) -> None:
    with server.client() as client:
        raw = client.post(
            "/v1/age/predict", content=images.png(), headers={"content-type": "image/png"}
        )
        multipart = post_images(client, "/v1/age/predict", [("x.png", images.png(), "image/png")])
    assert raw.status_code == 200, raw.text
    assert raw.json()["predictions"][0]["expected"] == pytest.approx(
        multipart.json()["predictions"][0]["expected"], abs=1e-6
    )


def test_multi_task_predict_matches_single_task(server: RunningServer) -> None:
    files = [
        ("a.jpg", images.jpeg(seed=1), "image/jpeg"),
        ("b.png", images.png(seed=2), "image/png"),
    ]
    with server.client() as client:
        multi = post_images(client, "/v1/predict", files, tasks="age,decade")
        single = {
            t: post_images(client, f"/v1/{t}/predict", files).json() for t in ("age", "decade")
        }
        everything = post_images(client, "/v1/predict", files[:1])
    assert multi.status_code == 200, multi.text
    body = multi.json()
    assert body["tasks"] == ["age", "decade"]
    assert set(body["models"]) == {"age", "decade"}
    for index, per_image in enumerate(body["predictions"]):
        assert per_image["filename"] == files[index][0]
        for task in ("age", "decade"):
            expected = single[task]["predictions"][index]["expected"]
            assert per_image["results"][task]["expected"] == pytest.approx(expected, abs=1e-3)
    assert everything.json()["tasks"] == ["aesthetics", "age", "decade"]


def test_models_metadata(server: RunningServer) -> None:
    with server.client() as client:
        listing = client.get("/v1/models").json()["models"]
        decade = client.get("/v1/models/decade").json()
        missing = client.get("/v1/models/height")
    assert [m["task"] for m in listing] == ["aesthetics", "age", "decade"]
    assert decade["values"] == [1930.0, 1940.0, 1950.0, 1960.0, 1970.0]
    assert decade["labels"][0] == "1930s"
    assert decade["unit"] == "decade"
    assert decade["backbone"]["id"] == "tiny-random-s0"
    assert decade["backbone"]["weights"]["kind"] == "random"
    assert decade["provenance"]["method"] == "zero-shot template ensemble"
    assert_error(missing, 404, "unknown_task")


def test_metrics_exposition(server: RunningServer) -> None:
    with server.client() as client:
        post_images(client, "/v1/age/predict", [("a.jpg", images.jpeg(), "image/jpeg")])
        text = client.get("/metrics").text
    assert (
        'oclip_requests_total{method="POST",route="/v1/{task}/predict",status="200",task="age"}'
        in text
    )
    assert 'oclip_images_total{task="age"}' in text
    assert "oclip_batch_size_bucket" in text
    assert 'oclip_model_info{backbone="tiny-random-s0"' in text


def test_openapi_documents_the_upload(server: RunningServer) -> None:
    with server.client() as client:
        schema = client.get("/openapi.json").json()
        docs = client.get("/docs")
    body = schema["paths"]["/v1/{task}/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    assert docs.status_code == 200


# -- errors -----------------------------------------------------------------------------------
def test_unknown_task(server: RunningServer) -> None:
    with server.client() as client:
        response = post_images(
            client, "/v1/height/predict", [("a.jpg", images.jpeg(), "image/jpeg")]
        )
        multi = post_images(
            client, "/v1/predict", [("a.jpg", images.jpeg(), "image/jpeg")], tasks="age,height"
        )
    assert_error(response, 404, "unknown_task")
    assert "age" in response.json()["error"]["message"]  # lists what is served
    assert_error(multi, 404, "unknown_task")


def test_no_image_part(server: RunningServer) -> None:
    with server.client() as client:
        other_field = client.post(
            "/v1/age/predict", files=[("photo", ("a.jpg", images.jpeg(), "image/jpeg"))]
        )
        text_only = client.post("/v1/age/predict", data={"note": "hello"}, files=[])
    assert_error(other_field, 422, "no_image")
    assert text_only.status_code in (415, 422)


def test_text_field_named_image(server: RunningServer) -> None:
    with server.client() as client:
        response = client.post(
            "/v1/age/predict",
            content=(
                b'--XX\r\nContent-Disposition: form-data; name="image"\r\n\r\n'
                b"not a file\r\n--XX--\r\n"
            ),
            headers={"content-type": "multipart/form-data; boundary=XX"},
        )
    assert_error(response, 422, "invalid_request")


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 422, "invalid_image"),
        (b"%PDF-1.4 definitely not an image", 415, "unsupported_media_type"),
        (images.jpeg()[:300], 422, "invalid_image"),
        (images.png()[:-40], 422, "invalid_image"),
    ],
    ids=["empty", "not-an-image", "truncated-jpeg", "truncated-png"],
)
def test_bad_image_bytes(server: RunningServer, data: bytes, status: int, code: str) -> None:
    with server.client() as client:
        response = post_images(client, "/v1/age/predict", [("bad.jpg", data, "image/jpeg")])
    assert_error(response, status, code)


def test_wrong_content_type(server: RunningServer) -> None:
    with server.client() as client:
        response = client.post("/v1/age/predict", json={"image": "base64?"})
    assert_error(response, 415, "unsupported_media_type")


def test_too_many_images(server: RunningServer) -> None:
    files = [(f"{i}.jpg", images.jpeg(seed=i), "image/jpeg") for i in range(5)]  # limit is 4
    with server.client() as client:
        response = post_images(client, "/v1/age/predict", files)
    assert_error(response, 413, "too_many_images")


def test_too_many_bytes(server: RunningServer) -> None:
    with server.client() as client:
        declared = post_images(
            client, "/v1/age/predict", [("big.bin", b"\0" * 9_000_000, "image/jpeg")]
        )

        def chunks():  # no Content-Length: the limit must hold while streaming
            for _ in range(10):
                yield b"\0" * 1_000_000

        streamed = client.post(
            "/v1/age/predict", content=chunks(), headers={"content-type": "image/jpeg"}
        )
    assert_error(declared, 413, "payload_too_large")
    assert_error(streamed, 413, "payload_too_large")


def test_unknown_route_and_method(server: RunningServer) -> None:
    with server.client() as client:
        assert_error(client.get("/v9/nothing"), 404, "not_found")
        assert_error(client.get("/v1/age/predict"), 405, "method_not_allowed")


def test_bad_query_parameter(server: RunningServer) -> None:
    with server.client() as client:
        response = post_images(
            client,
            "/v1/age/predict",
            [("a.jpg", images.jpeg(), "image/jpeg")],
            distribution="maybe",
        )
        empty = post_images(
            client, "/v1/predict", [("a.jpg", images.jpeg(), "image/jpeg")], tasks=","
        )
    assert_error(response, 422, "invalid_request")
    assert_error(empty, 422, "invalid_request")


def test_server_survived_everything(server: RunningServer) -> None:
    with server.client() as client:
        assert client.get("/readyz").status_code == 200
        text = client.get("/metrics").text
    assert 'status="500"' not in text
    assert "Traceback" not in server.log_text()


def test_request_id_is_echoed_and_logged(server: RunningServer) -> None:
    with server.client() as client:
        given = client.get("/healthz", headers={"X-Request-ID": "client-id-42"})
        generated = client.get("/healthz")
        hostile = client.get("/healthz", headers={"X-Request-ID": "bad id;" * 30})
    assert given.headers["x-request-id"] == "client-id-42"
    assert len(generated.headers["x-request-id"]) == 32
    assert len(hostile.headers["x-request-id"]) == 32  # an unsafe id is replaced
    time.sleep(0.2)
    lines = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry.get("request_id") == "client-id-42"]
    assert access and access[0]["status"] == 200 and access[0]["route"] == "/healthz"
