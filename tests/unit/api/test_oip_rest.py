"""The Open Inference Protocol's REST endpoints (/v2) through the real app and engine in
process, with request bodies built and answers read by tritonclient's own HTTP codec
(``generate_request_body``, ``InferResult.from_response_body``): every endpoint, answers
equal to v1's, and each kind of bad input answered with its 4xx in the protocol's shape."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from service.engine.lifecycle import EngineHost
from tests import images
from tests.unit.api.conftest import Call, caller, image_parts

http = pytest.importorskip("tritonclient.http")

PNGS = [images.png(seed=1), images.png(seed=2)]
HEADER = "Inference-Header-Content-Length"


def image_input(*files: bytes, shape: list[int] | None = None) -> Any:
    tensor = http.InferInput("image", shape or [len(files)], "BYTES")
    return tensor.set_data_from_numpy(np.array(list(files), dtype=object))


def binary_post(call: Call, path: str, inputs: list[Any], **kwargs: Any) -> httpx.Response:
    body, length = http.InferenceServerClient.generate_request_body(inputs, **kwargs)
    return call("POST", path, content=body, headers={HEADER: str(length)})


def parsed(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    length = response.headers.get(HEADER)
    return http.InferResult.from_response_body(
        response.content, header_length=None if length is None else int(length)
    )


def json_body(*files: bytes, **fields: Any) -> dict[str, Any]:
    data = [base64.b64encode(f).decode() for f in files]
    tensor = {"name": "image", "datatype": "BYTES", "shape": [len(files)], "data": data}
    return {"inputs": [tensor], **fields}


def assert_oip_error(response: httpx.Response, status: int, code: str) -> str:
    """The protocol's error shape: ``{"error": "<message>"}``, our stable code beside it."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["error"], body
    assert body["code"] == code, body
    assert "Traceback" not in response.text
    return str(body["error"])


def v1_answer(call: Call, *files: bytes, faces: bool = False) -> list[dict[str, Any]]:
    params = {"faces": "true"} if faces else {}
    response = call("POST", "/v1/age/predict", files=image_parts(*files), params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["predictions"])


def test_server_endpoints(call: Call) -> None:
    assert call("GET", "/v2").json()["extensions"] == ["binary_tensor_data"]
    assert call("GET", "/v2/health/live").json() == {"live": True}
    assert call("GET", "/v2/health/ready").json() == {"ready": True}


def test_model_metadata_and_readiness(call: Call) -> None:
    v1 = call("GET", "/v1/models/age").json()
    ranks = len(v1["values"])
    for path in ("/v2/models/age", f"/v2/models/age/versions/{v1['version']}"):
        meta = call("GET", path).json()
        assert meta["name"] == "age" and meta["versions"] == [v1["version"]]
        assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
        shapes = {o["name"]: (o["datatype"], o["shape"]) for o in meta["outputs"]}
        assert shapes["expected"] == ("FP64", [-1])
        assert shapes["interval"] == ("FP64", [-1, 2])
        assert shapes["probabilities"] == ("FP64", [-1, ranks])
    for path in ("/v2/models/age/ready", f"/v2/models/age/versions/{v1['version']}/ready"):
        assert call("GET", path).json()["ready"] is True
    assert "not served" in assert_oip_error(
        call("GET", "/v2/models/age/versions/v999"), 404, "unknown_task"
    )
    assert_oip_error(call("GET", "/v2/models/age/versions/v999/ready"), 404, "unknown_task")
    assert "age" in assert_oip_error(call("GET", "/v2/models/nope"), 404, "unknown_task")


def test_binary_infer_equals_v1(call: Call) -> None:
    """tritonclient's default: binary input, and (no output named) binary outputs."""
    result = parsed(binary_post(call, "/v2/models/age/infer", [image_input(*PNGS)]))
    expected = v1_answer(call, *PNGS)
    np.testing.assert_allclose(
        result.as_numpy("expected"), [p["expected"] for p in expected], atol=1e-6
    )
    np.testing.assert_allclose(result.as_numpy("mode"), [p["mode"] for p in expected], atol=1e-6)
    np.testing.assert_allclose(
        result.as_numpy("median"), [p["median"] for p in expected], atol=1e-6
    )
    intervals = [[p["interval"]["low"], p["interval"]["high"]] for p in expected]
    np.testing.assert_allclose(result.as_numpy("interval"), intervals, atol=1e-6)
    probabilities = [p["distribution"]["probabilities"] for p in expected]
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, atol=1e-6)
    assert result.get_response()["model_name"] == "age"


def test_json_infer_versioned_with_requested_outputs(call: Call) -> None:
    version = call("GET", "/v1/models/age").json()["version"]
    body = json_body(*PNGS, id="req-7", outputs=[{"name": "interval"}, {"name": "expected"}])
    response = call("POST", f"/v2/models/age/versions/{version}/infer", json=body)
    answer = response.json()
    assert HEADER not in response.headers
    assert answer["id"] == "req-7" and answer["model_version"] == version
    assert [o["name"] for o in answer["outputs"]] == ["interval", "expected"]
    assert answer["outputs"][0]["shape"] == [2, 2]
    expected = [p["expected"] for p in v1_answer(call, *PNGS)]
    np.testing.assert_allclose(parsed(response).as_numpy("expected"), expected, atol=1e-6)


def test_mixed_binary_and_json_outputs(call: Call) -> None:
    outputs = [
        http.InferRequestedOutput("expected", binary_data=True),
        http.InferRequestedOutput("mode", binary_data=False),
    ]
    response = binary_post(call, "/v2/models/age/infer", [image_input(PNGS[0])], outputs=outputs)
    result = parsed(response)
    entries = {o["name"]: o for o in result.get_response()["outputs"]}
    assert "binary_data_size" in entries["expected"]["parameters"] and "data" in entries["mode"]
    v1 = v1_answer(call, PNGS[0])[0]
    assert result.as_numpy("mode")[0] == pytest.approx(v1["mode"], abs=1e-6)
    assert result.as_numpy("expected")[0] == pytest.approx(v1["expected"], abs=1e-6)


def test_distribution_parameter_drops_probabilities(call: Call) -> None:
    body = json_body(PNGS[0], parameters={"distribution": False})
    names = [o["name"] for o in call("POST", "/v2/models/age/infer", json=body).json()["outputs"]]
    assert names == ["expected", "mode", "median", "interval"]


def test_faces_parameter_answers_per_face(call: Call) -> None:
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    portrait = images.encode(Image.fromarray(data.astronaut()), "JPEG")
    body = json_body(portrait, PNGS[0], parameters={"faces": True})
    result = parsed(call("POST", "/v2/models/age/infer", json=body))
    v1 = v1_answer(call, portrait, PNGS[0], faces=True)
    faces = [face for image in v1 for face in image["faces"]]
    assert len(faces) >= 1  # the astronaut's face; the gradient has none
    assert result.as_numpy("faces_found").tolist() == [image["faces_found"] for image in v1]
    assert result.as_numpy("image_index").tolist() == [0] * len(faces)
    boxes = [[f["box"][k] for k in ("x", "y", "width", "height")] for f in faces]
    assert result.as_numpy("box").tolist() == boxes
    np.testing.assert_allclose(
        result.as_numpy("expected"), [f["expected"] for f in faces], atol=1e-6
    )


def raw_body(header: dict[str, Any], binary: bytes) -> tuple[bytes, dict[str, str]]:
    encoded = json.dumps(header).encode()
    return encoded + binary, {HEADER: str(len(encoded))}


def serialised(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def binary_case(shape: list[int], binary: bytes, size: int | None = None) -> dict[str, Any]:
    parameters = {"binary_data_size": len(binary) if size is None else size}
    tensor = {"name": "image", "datatype": "BYTES", "shape": shape, "parameters": parameters}
    body, headers = raw_body({"inputs": [tensor]}, binary)
    return {"content": body, "headers": headers}


def with_input(**changes: Any) -> dict[str, Any]:
    body = json_body(PNGS[0])
    body["inputs"][0] |= changes
    return {"json": body}


BAD_INPUT = {
    "wrong datatype": (with_input(datatype="INT32", data=[1]), 400, "invalid_inference_request"),
    "pixels": (
        with_input(datatype="FP32", shape=[1, 3, 2, 2], data=[0.0] * 12),
        400,
        "invalid_inference_request",
    ),
    "wrong input name": (with_input(name="images"), 400, "invalid_inference_request"),
    "2-D shape": (with_input(shape=[1, 1]), 400, "invalid_inference_request"),
    "shape says more": (with_input(shape=[2]), 400, "invalid_inference_request"),
    "not base64": (with_input(data=["%%%"]), 400, "invalid_inference_request"),
    "not a string": (with_input(data=[5]), 400, "invalid_inference_request"),
    "not an image": (
        with_input(data=[base64.b64encode(b"hello").decode()]),
        415,
        "unsupported_media_type",
    ),
    "no element": (with_input(shape=[0], data=[]), 422, "no_image"),
    "more than the limit": ({"json": json_body(*[PNGS[0]] * 5)}, 413, "too_many_images"),
    "unknown output": (
        {"json": json_body(PNGS[0], outputs=[{"name": "age"}])},
        400,
        "invalid_inference_request",
    ),
    "face output without faces": (
        {"json": json_body(PNGS[0], outputs=[{"name": "box"}])},
        400,
        "invalid_inference_request",
    ),
    "bad parameter": (
        {"json": json_body(PNGS[0], parameters={"faces": 3})},
        400,
        "invalid_inference_request",
    ),
    "not json": ({"content": b"{nope"}, 400, "invalid_inference_request"),
    "no inputs": ({"json": {"outputs": []}}, 400, "invalid_inference_request"),
    "header length past the body": (
        {"content": b"{}", "headers": {HEADER: "99"}},
        400,
        "invalid_inference_request",
    ),
    "header length not a number": (
        {"content": b"{}", "headers": {HEADER: "two"}},
        400,
        "invalid_inference_request",
    ),
    "binary size past the body": (
        binary_case([1], serialised(PNGS[0]), size=10**6),
        400,
        "invalid_inference_request",
    ),
    "binary bytes left over": (
        binary_case([1], serialised(PNGS[0]) + b"xx"),
        400,
        "invalid_inference_request",
    ),
    "element length past its tensor": (
        binary_case([1], struct.pack("<I", 10**6) + PNGS[0]),
        400,
        "invalid_inference_request",
    ),
    "fewer elements than the shape": (
        binary_case([2], serialised(PNGS[0])),
        400,
        "invalid_inference_request",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_gets_a_clear_4xx(call: Call, case: str) -> None:
    request, status, code = BAD_INPUT[case]
    assert_oip_error(call("POST", "/v2/models/age/infer", **request), status, code)


def test_framework_errors_and_body_limit_in_the_protocol_shape(
    make_app: Callable[..., FastAPI],
) -> None:
    call = caller(make_app(max_upload_bytes=1000))
    assert_oip_error(call("GET", "/v2/models/age/infer"), 405, "method_not_allowed")
    assert_oip_error(call("GET", "/v2/nothing"), 404, "not_found")
    assert_oip_error(
        call("POST", "/v2/models/age/infer", json=json_body(images.png(400, 400))),
        413,
        "payload_too_large",
    )


def test_api_keys_guard_models_not_health(make_app: Callable[..., FastAPI]) -> None:
    call = caller(make_app(api_keys="k1"))
    assert_oip_error(call("GET", "/v2/models/age"), 401, "unauthorized")
    assert_oip_error(
        call("POST", "/v2/models/age/infer", json=json_body(PNGS[0])), 401, "unauthorized"
    )
    assert call("GET", "/v2/health/ready").status_code == 200
    assert call("GET", "/v2").status_code == 200
    keyed = call("GET", "/v2/models/age", headers={"X-API-Key": "k1"})
    assert keyed.status_code == 200
    bearer = {"Authorization": "Bearer k1"}
    assert (
        call("POST", "/v2/models/age/infer", json=json_body(PNGS[0]), headers=bearer).status_code
        == 200
    )


def test_not_ready_is_503(tiny_store: Path) -> None:
    from service.api.app import create_app
    from service.config import Settings

    never = EngineHost(lambda: (_ for _ in ()).throw(RuntimeError("weights missing")))
    never.start_loading()
    never.wait_loaded()
    call = caller(create_app(Settings(model_store=tiny_store), never))
    ready = call("GET", "/v2/health/ready")
    assert ready.status_code == 503 and ready.json() == {"ready": False}
    message = assert_oip_error(
        call("POST", "/v2/models/age/infer", json=json_body(PNGS[0])), 503, "not_ready"
    )
    assert "weights missing" in message


def test_uploads_in_flight_are_bounded_on_v2_too(make_app: Callable[..., FastAPI]) -> None:
    """The same upload slots as v1: a second body while one trickles in is a 429."""
    app = make_app(max_concurrent_uploads=1)

    async def trickle() -> Any:
        yield b'{"inputs": '
        await asyncio.sleep(1.0)
        yield b"[]}"

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            slow = asyncio.ensure_future(client.post("/v2/models/age/infer", content=trickle()))
            await asyncio.sleep(0.3)
            second = await client.post("/v2/models/age/infer", json=json_body(PNGS[0]))
            return [await slow, second]

    slow, second = asyncio.run(run())
    assert_oip_error(slow, 400, "invalid_inference_request")  # read, then judged: no image
    assert_oip_error(second, 429, "overloaded")
    assert second.headers["retry-after"] == "1"
