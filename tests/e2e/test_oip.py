"""The Open Inference Protocol through a real server process and Triton's real clients
(``tritonclient.http`` and ``tritonclient.grpc``): every endpoint of both transports,
answers equal to v1's, the error cases with their statuses, API keys on both, and the
requests counted in the same metrics as v1's."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import images
from tests.server_process import RunningServer, free_port, serving

pytestmark = pytest.mark.slow
http = pytest.importorskip("tritonclient.http")
tgrpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

KEY = "oip-key"
PNGS = [images.png(seed=3), images.jpeg(seed=4)]
LIMIT = 4


@dataclass
class Endpoints:
    server: RunningServer
    grpc_address: str

    def http_client(self, key: str | None = KEY) -> Any:
        headers = {"X-API-Key": key} if key else None
        return http.InferenceServerClient(self.server.url.removeprefix("http://")), headers

    def grpc_client(self) -> Any:
        return tgrpc.InferenceServerClient(self.grpc_address)


@pytest.fixture(scope="module")
def endpoints(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    port = free_port()
    env = {
        "OCLIP_GRPC_PORT": str(port),
        "OCLIP_API_KEYS": KEY,
        "OCLIP_MAX_IMAGES_PER_REQUEST": str(LIMIT),
    }
    with serving(tiny_store, tmp_path_factory.mktemp("oip") / "log", env) as server:
        yield Endpoints(server, f"127.0.0.1:{port}")


def v1(endpoints: Endpoints, *files: bytes) -> list[dict[str, Any]]:
    parts = [
        ("image", (f"{i}.img", data, "application/octet-stream")) for i, data in enumerate(files)
    ]
    with endpoints.server.client(headers={"X-API-Key": KEY}) as client:
        response = client.post("/v1/age/predict", files=parts)
    assert response.status_code == 200, response.text
    return list(response.json()["predictions"])


def image_input(module: Any, *files: bytes, datatype: str = "BYTES") -> Any:
    tensor = module.InferInput("image", [len(files)], datatype)
    array = (
        np.array(list(files), dtype=object)
        if datatype == "BYTES"
        else np.zeros(len(files), np.int32)
    )
    return tensor.set_data_from_numpy(array)


def assert_equals_v1(result: Any, expected: list[dict[str, Any]]) -> None:
    for name in ("expected", "mode", "median"):
        np.testing.assert_allclose(result.as_numpy(name), [p[name] for p in expected], atol=1e-6)
    intervals = [[p["interval"]["low"], p["interval"]["high"]] for p in expected]
    np.testing.assert_allclose(result.as_numpy("interval"), intervals, atol=1e-6)
    probabilities = [p["distribution"]["probabilities"] for p in expected]
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, atol=1e-6)


def test_http_client_every_endpoint(endpoints: Endpoints) -> None:
    client, headers = endpoints.http_client()
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "ordinal-service"
    version = client.get_model_metadata("age", headers=headers)["versions"][0]
    assert client.is_model_ready("age", headers=headers)
    assert client.is_model_ready("age", model_version=version, headers=headers)
    meta = client.get_model_metadata("age", model_version=version, headers=headers)
    assert meta["inputs"][0]["datatype"] == "BYTES"
    expected = v1(endpoints, *PNGS)
    assert_equals_v1(client.infer("age", [image_input(http, *PNGS)], headers=headers), expected)
    outputs = [
        http.InferRequestedOutput(n, binary_data=False)
        for n in ("expected", "mode", "median", "interval", "probabilities")
    ]
    versioned = client.infer(
        "age", [image_input(http, *PNGS)], model_version=version, outputs=outputs, headers=headers
    )
    assert_equals_v1(versioned, expected)
    assert not client.is_model_ready("nope", headers=headers)


def test_grpc_client_every_endpoint(endpoints: Endpoints) -> None:
    client = endpoints.grpc_client()
    metadata = {"x-api-key": KEY}
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata().name == "ordinal-service"
    meta = client.get_model_metadata("age", headers=metadata)
    assert [t.name for t in meta.inputs] == ["image"]
    assert client.is_model_ready("age", model_version=meta.versions[0], headers=metadata)
    expected = v1(endpoints, *PNGS)
    assert_equals_v1(client.infer("age", [image_input(tgrpc, *PNGS)], headers=metadata), expected)
    asked = [tgrpc.InferRequestedOutput("expected")]
    only = client.infer(
        "age",
        [image_input(tgrpc, *PNGS)],
        outputs=asked,
        model_version=meta.versions[0],
        headers={"authorization": f"Bearer {KEY}"},
    )
    assert [o.name for o in only.get_response().outputs] == ["expected"]
    np.testing.assert_allclose(
        only.as_numpy("expected"), [p["expected"] for p in expected], atol=1e-6
    )


def one(module: Any, data: bytes = PNGS[0], count: int = 1, datatype: str = "BYTES") -> list[Any]:
    return [image_input(module, *[data] * count, datatype=datatype)]


# case: (the call, with a client, its module and the key's headers; HTTP status; gRPC code)
ERRORS: dict[str, tuple[Callable[[Any, Any, dict[str, str]], Any], str, str]] = {
    "no key": (lambda c, m, h: c.infer("age", one(m)), "401", "UNAUTHENTICATED"),
    "unknown model": (lambda c, m, h: c.infer("nope", one(m), headers=h), "404", "NOT_FOUND"),
    "unknown version": (
        lambda c, m, h: c.get_model_metadata("age", model_version="v99", headers=h),
        "404",
        "NOT_FOUND",
    ),
    "wrong datatype": (
        lambda c, m, h: c.infer("age", one(m, datatype="INT32"), headers=h),
        "400",
        "INVALID_ARGUMENT",
    ),
    "not an image": (
        lambda c, m, h: c.infer("age", one(m, b"hello"), headers=h),
        "415",
        "INVALID_ARGUMENT",
    ),
    "more than the limit": (
        lambda c, m, h: c.infer("age", one(m, count=LIMIT + 1), headers=h),
        "413",
        "INVALID_ARGUMENT",
    ),
    "unknown output": (
        lambda c, m, h: c.infer("age", one(m), outputs=[m.InferRequestedOutput("x")], headers=h),
        "400",
        "INVALID_ARGUMENT",
    ),
}


@pytest.mark.parametrize("transport", ["http", "grpc"])
@pytest.mark.parametrize("case", list(ERRORS))
def test_client_errors(endpoints: Endpoints, case: str, transport: str) -> None:
    call, http_status, grpc_code = ERRORS[case]
    if transport == "http":
        client, module, status = endpoints.http_client()[0], http, http_status
    else:
        client, module, status = endpoints.grpc_client(), tgrpc, f"StatusCode.{grpc_code}"
    with pytest.raises(InferenceServerException) as caught:
        call(client, module, {"x-api-key": KEY})
    assert caught.value.status() == status and caught.value.message(), caught.value


def raw_infer(endpoints: Endpoints, shape: list[int], raw: list[bytes]) -> grpc.RpcError:
    """A hand-made ModelInferRequest through the generated stub tritonclient ships."""
    request = service_pb2.ModelInferRequest(model_name="age", raw_input_contents=raw)
    request.inputs.add(name="image", datatype="BYTES", shape=shape)
    with grpc.insecure_channel(endpoints.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request, metadata=[("x-api-key", KEY)])
    return caught.value


def test_grpc_lying_lengths_and_shapes(endpoints: Endpoints) -> None:
    element = struct.pack("<I", len(PNGS[0])) + PNGS[0]
    cases = {
        "length past the end": ([1], [struct.pack("<I", 10**6) + PNGS[0]]),
        "bytes left over": ([1], [element + b"x"]),
        "shape says more": ([2], [element]),
        "2-D shape": ([1, 1], [element]),
        "raw contents per input": ([1], [element, element]),
    }
    for case, (shape, raw) in cases.items():
        error = raw_infer(endpoints, shape, raw)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, case
        assert dict(error.trailing_metadata())["oclip-error-code"] == "invalid_inference_request"


def test_grpc_typed_bytes_contents_equal_raw_contents(endpoints: Endpoints) -> None:
    """BYTES elements in ``contents.bytes_contents`` instead of ``raw_input_contents``."""
    request = service_pb2.ModelInferRequest(model_name="age")
    tensor = request.inputs.add(name="image", datatype="BYTES", shape=[len(PNGS)])
    tensor.contents.bytes_contents.extend(PNGS)
    request.outputs.add(name="expected")
    with grpc.insecure_channel(endpoints.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        answer = stub.ModelInfer(request, metadata=[("x-api-key", KEY)])
    (raw,) = answer.raw_output_contents
    expected = [p["expected"] for p in v1(endpoints, *PNGS)]
    np.testing.assert_allclose(np.frombuffer(raw, dtype="<f8"), expected, atol=1e-6)


def test_both_transports_are_counted_in_the_same_metrics(endpoints: Endpoints) -> None:
    client, headers = endpoints.http_client()
    client.infer("age", [image_input(http, PNGS[0])], headers=headers)
    endpoints.grpc_client().infer("age", [image_input(tgrpc, PNGS[0])], headers={"x-api-key": KEY})
    with endpoints.server.client() as client:
        exposition = client.get("/metrics").text
    routes = {
        sample.labels["route"]
        for family in text_string_to_metric_families(exposition)
        if family.name == "oclip_requests"
        for sample in family.samples
        if sample.labels.get("status") == "200"
    }
    assert {"/v2/models/{task}/infer", "/inference.GRPCInferenceService/ModelInfer"} <= routes
