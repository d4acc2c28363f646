"""The try-it page's routes, in process: headers, the asset allow-list, the off switch, metrics.

The page's behaviour in a browser is tested in tests/e2e/test_web_page.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service import metrics
from service.api.app import create_app
from service.settings import Settings


def client(tmp_path: Path, **settings: object) -> TestClient:
    """The app without its lifespan (no ``with``): the page needs no loaded model."""
    return TestClient(create_app(Settings(model_store=tmp_path, **settings)))


def page_requests() -> float:
    return metrics.REQUESTS.labels("/", "", "GET", "200")._value.get()


def test_page_has_a_strict_policy_and_no_inline_script(tmp_path: Path) -> None:
    http = client(tmp_path)
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = dict(
        d.strip().split(" ", 1) for d in page.headers["content-security-policy"].split(";")
    )
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
    assert "unsafe" not in page.headers["content-security-policy"]
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts and all('src="/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+=", page.text)  # no inline event handlers either
    assert page.headers["x-content-type-options"] == "nosniff"


def test_every_asset_the_page_links_is_served(tmp_path: Path) -> None:
    http = client(tmp_path)
    page = http.get("/").text
    script = http.get("/static/app.js").text
    linked = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    linked += [f"/static/{name}" for name in re.findall(r'from "\./([^"]+)"', script)]
    assert len(linked) >= 3
    for path in linked:
        answer = http.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].split(";")[0] in ("text/javascript", "text/css")


@pytest.mark.parametrize(
    "path", ["/static/index.html", "/static/..%2F..%2Fconfig.py", "/static/x.js"]
)
def test_only_the_listed_assets_are_served(tmp_path: Path, path: str) -> None:
    http = client(tmp_path)
    answer = http.get(path)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


def test_the_setting_turns_the_page_off(tmp_path: Path) -> None:
    http = client(tmp_path, web_page=False)
    for path in ("/", "/static/app.js"):
        answer = http.get(path)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert http.get("/healthz").status_code == 200


def test_page_requests_count_in_request_metrics(tmp_path: Path) -> None:
    before = page_requests()
    http = client(tmp_path)
    http.get("/")
    assert page_requests() == before + 1
