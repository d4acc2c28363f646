"""Shared fixtures: a tiny random-weight registry and a real server in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.registry import ModelStore
from service.trainer.architectures import TINY, BuiltClip, build_clip
from service.trainer.tasks import BUILTIN_TASKS
from service.trainer.zeroshot import publish_zeroshot

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_clip() -> BuiltClip:
    return build_clip(TINY, seed=0)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, tiny_clip: BuiltClip) -> Path:
    """A registry with age, aesthetics and decade on one tiny random backbone."""
    root = tmp_path_factory.mktemp("store")
    publish_zeroshot(ModelStore(root), tiny_clip, list(BUILTIN_TASKS.values()), "tests")
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    store: Path, log: Path, env: dict[str, str] | None = None, wait_ready: bool = True
) -> RunningServer:
    """``python -m service`` in a subprocess on a free port; waits until /readyz is 200."""
    port = free_port()
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable, "-m", "service", "--model-store", str(store), "--port", str(port)]
    handle = log.open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=handle, stderr=handle)
    server = RunningServer(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log_text()}")
        try:
            response = httpx.get(f"{server.url}/readyz", timeout=2)
            if response.status_code == 200 or (not wait_ready and response.status_code == 503):
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"server not ready in time:\n{server.log_text()}")


def stop_server(server: RunningServer) -> int:
    server.process.terminate()
    try:
        return server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        return server.process.wait()


@pytest.fixture(scope="module")
def server(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    running = start_server(
        tiny_store,
        log,
        env={"OCLIP_MAX_IMAGES_PER_REQUEST": "4", "OCLIP_MAX_UPLOAD_BYTES": "8000000"},
    )
    yield running
    stop_server(running)
