"""Requests and checks shared by the Open Inference Protocol's in-process tests: bodies
built and answers read by tritonclient's own HTTP codec."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np
import pytest

from tests import images
from tests.unit.api.conftest import Call, image_parts

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
