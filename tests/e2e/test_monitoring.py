"""Monitoring contract: the exposition lints, a real Prometheus scrapes the real service, the
shipped Prometheus/Grafana/compose/Docker files are valid and use only exported metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests import corpus, images
from tests.server_process import ROOT, RunningServer, free_port, launch, serving, stop_server

pytestmark = pytest.mark.slow
DOCKER = ROOT / "docker"


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert path, f"{name} is not installed: `make test` installs it (scripts/system-deps.sh)"
    return path


@pytest.fixture(scope="module")
def busy_server(
    tiny_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    env = {"OCLIP_ADMIN_API_KEYS": "operator-key"}
    with serving(tiny_store, tmp_path_factory.mktemp("mon") / "log", env) as server:
        with server.client() as client:  # give every metric family some samples
            client.post("/v1/age/predict", files=corpus.part(images.jpeg()))
            client.post("/v1/predict", files=corpus.part(images.png()))
            client.post("/v1/age/predict", files=corpus.part(b"junk"))
            client.post("/admin/reload", headers={"X-API-Key": "operator-key"})
        yield server


def exported_families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\w+) ", text, flags=re.M))


def used_metrics(expressions: list[str]) -> set[str]:
    names = set()
    for expr in expressions:
        for name in re.findall(r"\boclip_[a-z_]+", expr):
            names.add(re.sub(r"_(bucket|sum|count|total|created)$", "", name))
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DOCKER / "grafana/dashboards/ordinal-service.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((DOCKER / "prometheus/alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_live_exposition(busy_server: RunningServer) -> None:
    text = httpx.get(f"{busy_server.url}/metrics").text
    result = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shipped_prometheus_config_and_rules_are_valid() -> None:
    config = subprocess.run(
        [tool("promtool"), "check", "config", str(DOCKER / "prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
    )
    rules = subprocess.run(
        [tool("promtool"), "check", "rules", str(DOCKER / "prometheus/alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert config.returncode == 0, config.stdout + config.stderr
    assert rules.returncode == 0, rules.stdout + rules.stderr
    declared = (DOCKER / "prometheus/alerts.yml").read_text().count("- alert:")
    assert declared >= 7 and f"{declared} rules found" in rules.stdout


def test_dashboard_and_rules_use_only_exported_metrics(busy_server: RunningServer) -> None:
    families = exported_families(httpx.get(f"{busy_server.url}/metrics").text)
    families = {re.sub(r"_total$", "", f) for f in families}  # counters: family name sans _total
    used = used_metrics(dashboard_expressions() + rule_expressions())
    assert len(used) >= 15
    assert used - families == set()


def test_real_prometheus_scrapes_the_service(busy_server: RunningServer, tmp_path: Path) -> None:
    target = busy_server.url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "ordinal-service", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    port = free_port()
    prometheus = launch(
        [
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        port,
        tmp_path / "prometheus.log",
        ready_path="/-/ready",
        timeout_s=60,
    )
    query = 'sum(oclip_requests_total{route="/v1/{task}/predict",status="200"})'

    def value() -> float:
        body = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}).json()
        result = body["data"]["result"]
        return float(result[0]["value"][1]) if result else -1.0

    def wait_for(predicate: object, seconds: float = 30) -> float:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            current = value()
            if predicate(current):  # type: ignore[operator]
                return current
            time.sleep(0.5)
        raise AssertionError(f"{query} stayed at {value()}")

    try:
        before = wait_for(lambda v: v >= 1)
        with busy_server.client() as client:
            for _ in range(5):
                assert (
                    client.post("/v1/age/predict", files=corpus.part(images.jpeg())).status_code
                    == 200
                )
        after = wait_for(lambda v: v >= before + 5)
        up = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": "up"}).json()
    finally:
        stop_server(prometheus)
    assert after - before >= 5
    assert up["data"]["result"][0]["value"][1] == "1"


def test_compose_file_is_valid() -> None:
    result = subprocess.run(
        [tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_metrics_count_every_request_in_one_process(busy_server: RunningServer) -> None:
    """One process per container (scale out with replicas): the counters are exact."""

    def count() -> float:
        text = httpx.get(f"{busy_server.url}/metrics").text
        match = re.search(r'oclip_images_total\{task="aesthetics"\} ([0-9.]+)', text)
        return float(match.group(1)) if match else 0.0

    start = count()
    with busy_server.client() as client:
        for _ in range(7):
            client.post("/v1/aesthetics/predict", files=corpus.part(images.png()))
    assert count() == start + 7
