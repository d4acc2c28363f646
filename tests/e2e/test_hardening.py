"""Hostile and unusual input, deadlines and API keys, through the real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import corpus, images
from tests.server_process import RunningServer, serving, start_server, stop_server

pytestmark = pytest.mark.slow
CASES = corpus.cases()


@pytest.fixture(scope="module")
def limited_server(
    tiny_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    env = {"OCLIP_MAX_IMAGES_PER_REQUEST": "4", "OCLIP_MAX_IMAGE_PIXELS": "40000000"}
    with serving(tiny_store, tmp_path_factory.mktemp("hard") / "log", env) as server:
        yield server


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_unusual_upload(limited_server: RunningServer, case: corpus.Case) -> None:
    with limited_server.client() as client:
        response = client.post(
            "/v1/age/predict",
            files=case.files,
            content=case.content,
            headers=case.headers,
            data=case.data,
        )
    assert response.status_code == case.status, response.text
    assert "Traceback" not in response.text
    if case.code is None:
        assert len(response.json()["predictions"]) >= 1
    else:
        assert response.json()["error"]["code"] == case.code


def test_too_many_form_fields_is_a_json_400(limited_server: RunningServer) -> None:
    fields = {f"f{i}": "x" for i in range(1200)}
    with limited_server.client() as client:
        response = client.post("/v1/age/predict", data=fields, files=corpus.part(images.jpeg()))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_nothing_above_left_a_500_or_a_traceback(limited_server: RunningServer) -> None:
    with limited_server.client() as client:
        assert client.get("/readyz").status_code == 200
        text = client.get("/metrics").text
    assert 'status="500"' not in text
    assert "Traceback" not in limited_server.log_text()


def test_deadline_answers_504(tiny_store: Path, tmp_path: Path) -> None:
    server = start_server(tiny_store, tmp_path / "log", {"OCLIP_REQUEST_TIMEOUT_S": "0.005"})
    try:
        with server.client() as client:
            response = client.post("/v1/age/predict", files=corpus.part(images.large_jpeg(12)))
            assert client.get("/readyz").status_code == 200  # still healthy afterwards
    finally:
        stop_server(server)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"


def test_api_keys(tiny_store: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# rotated 2026-11\nfile-key-3\n")
    env = {
        "OCLIP_API_KEYS": "secret-key-1,secret-key-2",
        "OCLIP_API_KEYS_FILE": str(key_file),
        "OCLIP_ADMIN_API_KEYS": "admin-key",
    }
    server = start_server(tiny_store, tmp_path / "log", env)
    files = corpus.part(images.jpeg())
    try:
        with server.client() as client:
            missing = client.post("/v1/age/predict", files=files)
            wrong = client.post(
                "/v1/age/predict", files=files, headers={"Authorization": "Bearer nope"}
            )
            bearer = client.post(
                "/v1/age/predict", files=files, headers={"Authorization": "Bearer secret-key-1"}
            )
            header = client.post(
                "/v1/age/predict", files=files, headers={"X-API-Key": "secret-key-2"}
            )
            from_file = client.get("/v1/models", headers={"X-API-Key": "file-key-3"})
            models = client.get("/v1/models")
            admin = client.post("/admin/reload", headers={"X-API-Key": "secret-key-1"})
            reloaded = client.post("/admin/reload", headers={"X-API-Key": "admin-key"})
            open_routes = [client.get(p).status_code for p in ("/healthz", "/readyz", "/metrics")]
    finally:
        stop_server(server)
    for refused in (missing, wrong, models, admin):
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"
    assert bearer.status_code == header.status_code == from_file.status_code == 200
    assert reloaded.status_code == 200  # the admin key, not a client key, opens /admin
    assert open_routes == [200, 200, 200]
    log = server.log_text()
    assert "secret-key" not in log and "file-key" not in log and "admin-key" not in log
