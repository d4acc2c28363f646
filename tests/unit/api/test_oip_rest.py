"""The Open Inference Protocol's REST endpoints (/v2) through the real app and engine in
process, with request bodies built and answers read by tritonclient's own HTTP codec
(``generate_request_body``, ``InferResult.from_response_body``): every endpoint, answers
equal to v1's, requested and binary outputs, and the ``faces``/``distribution`` parameters."""

from __future__ import annotations

import numpy as np
import pytest

from tests import images
from tests.unit.api.conftest import Call
from tests.unit.api.oip_helpers import (
    HEADER,
    PNGS,
    assert_oip_error,
    binary_post,
    http,
    image_input,
    json_body,
    parsed,
    v1_answer,
)


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
