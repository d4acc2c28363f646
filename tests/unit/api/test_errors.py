"""Every code of the error table, produced through the real app in process, plus the
table's agreement with docs/api.md and with every route's documented responses."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from service.engine.lifecycle import EngineHost
from service.errors import ERROR_TABLE
from service.registry.store import PROTOTYPES_FILE
from tests import corpus, images
from tests.server_process import ROOT
from tests.unit.api.conftest import (
    Call,
    assert_error,
    caller,
    image_parts,
    loaded_host,
    while_one_trickles,
)

PNG = images.png()
COVERED: set[str] = set()


def covers(code: str) -> str:
    COVERED.add(code)
    return code


def test_malformed_request(call: Call) -> None:
    fields = {f"f{i}": "x" for i in range(1200)}  # past Starlette's form-field limit
    response = call("POST", "/v1/age/predict", data=fields, files=image_parts(PNG))
    assert_error(response, 400, covers("malformed_request"))


def test_unauthorized(make_app: Callable[..., FastAPI]) -> None:
    call = caller(make_app(api_keys="k1"))
    response = call("POST", "/v1/age/predict", files=image_parts(PNG))
    assert_error(response, 401, covers("unauthorized"))
    assert response.headers["www-authenticate"] == "Bearer"


def test_unknown_task_is_refused_before_the_upload_is_read(call: Call) -> None:
    body = assert_error(
        call("POST", "/v1/nope/predict", files=image_parts(PNG)), 404, covers("unknown_task")
    )
    assert "age" in body["error"]["message"]  # lists the served tasks
    assert_error(
        call("POST", "/v1/predict?tasks=age,nope", files=image_parts(PNG)), 404, "unknown_task"
    )


def test_not_found_and_admin_off_without_an_admin_key(call: Call) -> None:
    assert_error(call("GET", "/v9/whatever"), 404, covers("not_found"))
    assert_error(call("POST", "/admin/reload"), 404, "not_found")


def test_method_not_allowed(call: Call) -> None:
    assert_error(call("GET", "/v1/age/predict"), 405, covers("method_not_allowed"))


def test_upload_timeout_for_a_trickling_body(make_app: Callable[..., FastAPI]) -> None:
    call = caller(make_app(upload_timeout_s=0.2))

    async def trickle() -> AsyncIterator[bytes]:
        yield b"\xff\xd8"
        await asyncio.sleep(5)
        yield b"never read"

    response = call(
        "POST", "/v1/age/predict", content=trickle(), headers={"content-type": "image/jpeg"}
    )
    assert_error(response, 408, covers("upload_timeout"))


def test_reload_failed_keeps_the_old_models(tiny_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    host = loaded_host(store)
    try:
        from service.api.app import create_app
        from service.settings import Settings

        call = caller(create_app(Settings(model_store=store, admin_api_keys="adm"), host))
        (next(store.glob(f"tasks/age/versions/*/{PROTOTYPES_FILE}"))).write_bytes(b"tampered")
        assert_error(
            call("POST", "/admin/reload", headers={"x-api-key": "adm"}),
            409,
            covers("reload_failed"),
        )
        assert call("POST", "/v1/age/predict", files=image_parts(PNG)).status_code == 200
    finally:
        host.stop()


def test_payload_too_large(make_app: Callable[..., FastAPI]) -> None:
    call = caller(make_app(max_upload_bytes=1000))
    response = call("POST", "/v1/age/predict", files=image_parts(images.png(200, 200)))
    assert_error(response, 413, covers("payload_too_large"))


def test_too_many_images(call: Call) -> None:
    assert_error(
        call("POST", "/v1/age/predict", files=image_parts(*[PNG] * 5)),
        413,
        covers("too_many_images"),
    )


def test_image_too_large(call: Call) -> None:
    huge = corpus.png_with_header_size(4000, 4000)  # 16 MP > 4 MP, from the header alone
    assert_error(
        call("POST", "/v1/age/predict", files=image_parts(huge)), 413, covers("image_too_large")
    )


def test_unsupported_media_type(call: Call) -> None:
    response = call("POST", "/v1/age/predict", files=[("image", ("a.txt", b"hello", "text/plain"))])
    body = assert_error(response, 415, covers("unsupported_media_type"))
    assert "PNG" in body["error"]["message"]  # names the accepted formats
    response = call("POST", "/v1/age/predict", content=b"x", headers={"content-type": "text/plain"})
    assert_error(response, 415, "unsupported_media_type")


def test_no_image(call: Call) -> None:
    response = call("POST", "/v1/age/predict", files=[("other", ("a.png", PNG, "image/png"))])
    assert_error(response, 422, covers("no_image"))


def test_invalid_image(call: Call) -> None:
    response = call("POST", "/v1/age/predict", files=image_parts(PNG[: len(PNG) // 2]))
    assert_error(response, 422, covers("invalid_image"))


def test_invalid_request(call: Call) -> None:
    response = call("POST", "/v1/age/predict?distribution=maybe", files=image_parts(PNG))
    assert_error(response, 422, covers("invalid_request"))
    response = call("POST", "/v1/predict?tasks=,", files=image_parts(PNG))
    assert_error(response, 422, "invalid_request")


def test_overloaded_when_the_queue_is_held(call: Call, host: EngineHost) -> None:
    assert host.engine is not None
    (backbone,) = host.engine.backbones.values()
    held = backbone.batcher.admission.reserve(8)  # another client's images fill the hard cap
    try:
        response = call("POST", "/v1/age/predict", files=image_parts(PNG))
    finally:
        held.release()
    assert_error(response, 429, covers("overloaded"))
    assert int(response.headers["retry-after"]) >= 1


def test_internal_error_keeps_the_request_id(
    call: Call, host: EngineHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unhandled bug: a JSON 500 that still carries the request id (the catch-all used
    to run outside the request-id middleware)."""
    assert host.engine is not None

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(host.engine, "predict", broken)
    response = call(
        "POST", "/v1/age/predict", files=image_parts(PNG), headers={"x-request-id": "abc-123"}
    )
    assert_error(response, 500, covers("internal_error"))
    assert response.headers["x-request-id"] == "abc-123"
    assert "a bug" not in response.text


def test_not_ready_while_loading(tiny_store: Path) -> None:
    from service.api.app import create_app
    from service.settings import Settings

    never = EngineHost(lambda: (_ for _ in ()).throw(RuntimeError("weights missing")))
    never.start_loading()
    never.wait_loaded()
    call = caller(create_app(Settings(model_store=tiny_store), never))
    body = assert_error(
        call("POST", "/v1/age/predict", files=image_parts(PNG)), 503, covers("not_ready")
    )
    assert "weights missing" in body["error"]["message"]
    assert call("GET", "/readyz").json()["status"] == "failed"


def test_shutting_down_refuses_late_requests(
    make_app: Callable[..., FastAPI], tiny_store: Path
) -> None:
    host = loaded_host(tiny_store)
    from service.api.app import create_app
    from service.settings import Settings

    call = caller(create_app(Settings(model_store=tiny_store), host))
    host.start_draining()
    try:
        response = call("POST", "/v1/age/predict", files=image_parts(PNG))
        assert_error(response, 503, covers("shutting_down"))
        assert response.headers["retry-after"] == "1"
        # Refused before its body was read: the rest of the body is read first (closing
        # with unread bytes would reset the socket), then the connection closes.
        assert response.headers["connection"] == "close"
        ready = call("GET", "/readyz")  # no body: the draining server closes after it
        assert ready.json()["status"] == "draining"
        assert ready.headers["connection"] == "close"
    finally:
        host.stop()


def test_deadline_exceeded(make_app: Callable[..., FastAPI]) -> None:
    call = caller(make_app(request_timeout_s=1e-6))
    response = call("POST", "/v1/age/predict", files=image_parts(PNG))
    assert_error(response, 504, covers("deadline_exceeded"))


def test_invalid_inference_request_in_the_protocols_shape(call: Call) -> None:
    """Under /v2 the body is the Open Inference Protocol's ``{"error": "<message>"}``."""
    response = call("POST", "/v2/models/age/infer", content=b"{nope")
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == covers("invalid_inference_request") and isinstance(body["error"], str)


def test_every_code_of_the_table_was_produced_above() -> None:
    """Runs last in this module (pytest keeps file order)."""
    assert {kind.code for kind in ERROR_TABLE} == COVERED


def test_docs_table_equals_the_error_table() -> None:
    page = (ROOT / "docs/api.md").read_text()
    section = page.split("## Limits and errors", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3})", section, re.M)
    assert rows == [(kind.code, str(kind.status)) for kind in ERROR_TABLE]


def test_every_route_documents_its_statuses_with_the_one_error_schema(call: Call) -> None:
    schema = call("GET", "/openapi.json").json()
    text = str(schema)
    assert "HTTPValidationError" not in text
    predict = schema["paths"]["/v1/{task}/predict"]["post"]["responses"]
    for status in ("400", "401", "404", "408", "413", "415", "422", "429", "500", "503", "504"):
        assert predict[status]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorResponse"
        ), status
    assert "`overloaded`" in predict["429"]["description"]


def test_client_codes_never_come_back_as_500(call: Call) -> None:
    for response in (
        call("POST", "/v1/age/predict", files=image_parts(b"")),
        call("POST", "/v1/age/predict", content=b"", headers={"content-type": "image/png"}),
    ):
        assert 400 <= response.status_code < 500, response.text
    _ = httpx  # the transport used by every call above


def test_uploads_in_flight_are_bounded(make_app: Callable[..., FastAPI]) -> None:
    app = make_app(max_concurrent_uploads=1)
    raw = {"content-type": "image/jpeg"}
    path = "/v1/age/predict"
    slow, second = while_one_trickles(
        app, path, [b"\xff\xd8", b"rest"], raw, files=image_parts(PNG)
    )
    assert slow.status_code == 415  # its body (not an image) was read and judged
    assert_error(second, 429, "overloaded")


def test_a_flood_of_file_parts_stops_at_the_image_limit(call: Call) -> None:
    parts = [("image", (f"{i}.png", b"x", "image/png")) for i in range(1001)]
    assert_error(call("POST", "/v1/age/predict", files=parts), 413, "too_many_images")
