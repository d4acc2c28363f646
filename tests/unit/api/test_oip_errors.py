"""Bad input and refusals on the Open Inference Protocol's REST endpoints, through the real
app and engine in process: each kind gets its clear 4xx (or 503) in the protocol's error
shape, never a 500."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from service.engine.lifecycle import EngineHost
from tests import images
from tests.unit.api.conftest import Call, caller, while_one_trickles
from tests.unit.api.oip_helpers import HEADER, PNGS, assert_oip_error, json_body


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
    from service.settings import Settings

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
    body = json_body(PNGS[0])
    path = "/v2/models/age/infer"
    slow, second = while_one_trickles(app, path, [b'{"inputs": ', b"[]}"], {}, json=body)
    assert_oip_error(slow, 400, "invalid_inference_request")  # read, then judged: no image
    assert_oip_error(second, 429, "overloaded")
    assert second.headers["retry-after"] == "1"
