"""The OpenAPI document as a contract: names, security, every status, bounds that match the
server, and the served tasks as examples. In-process, on the real app and engine."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from service.api.openapi import UPLOAD_SCHEMA
from tests import images
from tests.unit.api.conftest import ENGINE_LIMITS, caller, image_parts

OPERATION_IDS = {
    ("post", "/v1/{task}/predict"): "predict",
    ("post", "/v1/predict"): "predictTasks",
    ("get", "/v1/models"): "listModels",
    ("get", "/v1/models/{task}"): "getModel",
    ("get", "/healthz"): "health",
    ("get", "/readyz"): "ready",
    ("get", "/metrics"): "metrics",
    ("post", "/admin/reload"): "reload",
}
API = [{"bearerAuth": []}, {"apiKeyAuth": []}]


def schema_of(app: FastAPI) -> dict[str, Any]:
    return caller(app)("GET", "/openapi.json").json()


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


@pytest.fixture
def admin_schema(make_app: Callable[..., FastAPI]) -> dict[str, Any]:
    return schema_of(make_app(admin_api_keys="admin"))


def test_operations_are_named_for_clients(admin_schema: dict[str, Any]) -> None:
    named = {(m, p): op["operationId"] for m, p, op in operations(admin_schema)}
    assert named == OPERATION_IDS


def test_security_follows_each_route_and_the_key_setting(
    make_app: Callable[..., FastAPI], admin_schema: dict[str, Any]
) -> None:
    keyed = schema_of(make_app(api_keys="k", admin_api_keys="admin"))
    for method, path, operation in operations(keyed):
        if path.startswith("/v1/"):
            assert operation["security"] == API, path
        elif path.startswith("/admin/"):
            assert operation["security"] == [{"adminBearerAuth": []}, {"adminApiKeyAuth": []}]
        else:
            assert operation["security"] == [], (method, path)  # documented as open
    # Keys off: the same schemes are declared, and sending none is allowed too.
    assert admin_schema["paths"]["/v1/predict"]["post"]["security"] == [{}, *API]
    schemes = keyed["components"]["securitySchemes"]
    assert schemes == admin_schema["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyAuth"]["name"] == "X-API-Key"


def test_every_error_status_uses_the_one_error_schema(admin_schema: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in str(admin_schema)
    for method, path, operation in operations(admin_schema):
        responses = operation["responses"]
        assert {"405", "500"} <= set(responses), path
        for status, response in responses.items():
            if status.startswith("2") or (path, status) == ("/readyz", "503"):
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith("/ErrorResponse"), (method, path, status)


def test_the_upload_is_bounded_by_the_configured_limits(
    make_app: Callable[..., FastAPI],
) -> None:
    form = schema_of(make_app(max_images_per_request=3))["components"]["schemas"][UPLOAD_SCHEMA]
    assert form["properties"]["image"]["minItems"] == 1
    assert form["properties"]["image"]["maxItems"] == 3
    # The encoder queue caps a request too, whatever the per-request limit says.
    queued = ENGINE_LIMITS["max_queued_images"]
    form = schema_of(make_app(max_images_per_request=100))["components"]["schemas"][UPLOAD_SCHEMA]
    assert form["properties"]["image"]["maxItems"] == queued
    call = caller(make_app(max_images_per_request=100))
    too_many = call("POST", "/v1/age/predict", files=image_parts(*[images.png()] * (queued + 1)))
    assert too_many.status_code == 413
    at_limit = call("POST", "/v1/age/predict", files=image_parts(*[images.png()] * queued))
    assert at_limit.status_code == 200, at_limit.text


def test_the_task_parameter_shows_the_served_tasks_as_examples(
    admin_schema: dict[str, Any],
) -> None:
    for path in ("/v1/{task}/predict", "/v1/models/{task}"):
        method = "post" if path.endswith("predict") else "get"
        parameters = admin_schema["paths"][path][method]["parameters"]
        (task,) = [p for p in parameters if p["in"] == "path"]
        assert task["schema"]["examples"] == ["aesthetics", "age", "decade"]
        assert "enum" not in task["schema"]
        assert "reload" in task["description"]


@pytest.mark.parametrize("tasks", ["", ",", " , ,", "age", " age ,", "age,,decade", "height"])
def test_the_tasks_pattern_accepts_exactly_what_the_server_accepts(
    make_app: Callable[..., FastAPI], tasks: str
) -> None:
    app = make_app()
    parameter = schema_of(app)["paths"]["/v1/predict"]["post"]["parameters"][0]
    assert parameter["name"] == "tasks"
    (pattern,) = [s["pattern"] for s in parameter["schema"]["anyOf"] if "pattern" in s]
    response = caller(app)(
        "POST", "/v1/predict", params={"tasks": tasks}, files=image_parts(images.png())
    )
    valid = re.search(pattern, tasks) is not None
    assert (response.status_code != 422) == valid, (tasks, response.text)
