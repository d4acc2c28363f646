"""The Docker image, built and run for real (``make test-docker``; not part of ``make test``).

A private dockerd and a locally debootstrapped base image stand in for Docker Hub, which is
not reachable where this is tested (scripts/docker-env.sh). PyTorch's CPU wheel index is
not reachable either, so this builds the image with PyPI's (CUDA) torch wheels, which run
on the CPU; ``OCLIP_DOCKER_WHEELS`` may name a local wheel folder to serve to the build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import corpus, images
from tests.server_process import ROOT, free_port

pytestmark = pytest.mark.docker
IMAGE = "ordinal-service:test"
BASE_IMAGE = os.environ.get("OCLIP_BASE_IMAGE", "oclip-base:bookworm")


def docker(
    *args: str, check: bool = True, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


@pytest.fixture(scope="module")
def docker_host() -> Iterator[None]:
    started = subprocess.run(
        [str(ROOT / "scripts/docker-env.sh"), "start"], capture_output=True, text=True
    )
    assert started.returncode == 0, started.stderr[-3000:]
    os.environ["DOCKER_HOST"] = started.stdout.strip().split("=", 1)[1]
    yield


@pytest.fixture(scope="module")
def wheel_mirror() -> Iterator[str]:
    folder = os.environ.get("OCLIP_DOCKER_WHEELS", "")
    if not folder:
        yield ""
        return
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            folder,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)
    yield f"--find-links http://127.0.0.1:{port}/"
    server.terminate()


@pytest.fixture(scope="module")
def image(docker_host: None, wheel_mirror: str) -> str:
    certificates = Path("/usr/local/share/ca-certificates")
    for cert in certificates.glob("*.crt") if certificates.is_dir() else []:
        shutil.copy(cert, ROOT / "docker/ca-certificates" / cert.name)  # a TLS-inspecting proxy
    started = time.monotonic()
    docker(
        "build",
        "--network",
        "host",
        "-t",
        IMAGE,
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "--build-arg",
        "TORCH_VARIANT=cuda",
        "--build-arg",
        f"PIP_EXTRA_ARGS={wheel_mirror}",
        str(ROOT),
    )
    print(f"docker build: {time.monotonic() - started:.0f} s")
    return IMAGE


def test_image_serves_predictions_as_non_root_and_stops_cleanly(
    image: str, tiny_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "models"
    shutil.copytree(tiny_store, store)
    for path in [store, *store.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = free_port()
    container = docker(
        "run",
        "-d",
        "--network",
        "host",
        "-e",
        f"OCLIP_PORT={port}",
        "-v",
        f"{store}:/models:ro",
        image,
    ).stdout.strip()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        response = httpx.post(f"{url}/v1/age/predict", files=corpus.part(images.jpeg()), timeout=60)
        assert response.status_code == 200, docker("logs", container, check=False).stderr[-3000:]
        assert response.json()["model"]["backbone"] == "tiny-random-s0"
        assert docker("exec", container, "id", "-u").stdout.strip() == "10001"
        health = ""
        while time.monotonic() < deadline and health != "healthy":
            health = docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()
            time.sleep(1)
        assert health == "healthy"
        docker("stop", "-t", "30", container)
        assert docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip() == "0"
        logs = docker("logs", container).stderr
        assert '"request_id"' in logs  # structured JSON access log lines
    finally:
        docker("rm", "-f", container, check=False)
