"""Starting and stopping a real server process on a free port (tests and benchmarks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


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


def launch(
    command: list[str],
    port: int,
    log: Path,
    env: dict[str, str] | None = None,
    ready_path: str = "/readyz",
    timeout_s: float = 180,
) -> RunningServer:
    """Run ``command`` (which listens on ``port``) until ``ready_path`` answers 200."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    handle = log.open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=handle, stderr=handle)
    server = RunningServer(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log_text()}")
        try:
            if httpx.get(f"{server.url}{ready_path}", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"server not ready in time:\n{server.log_text()}")


def start_server(store: Path, log: Path, env: dict[str, str] | None = None) -> RunningServer:
    """``python -m service`` on ``store`` in a subprocess on a free port, once ready."""
    port = free_port()
    command = [sys.executable, "-m", "service", "--model-store", str(store), "--port", str(port)]
    return launch(command, port, log, env)


def stop_server(server: RunningServer) -> int:
    server.process.terminate()
    try:
        return server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        return server.process.wait()


@contextmanager
def serving(store: Path, log: Path, env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """A started server for the ``with`` block, stopped afterwards."""
    server = start_server(store, log, env)
    try:
        yield server
    finally:
        stop_server(server)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for process {pid}")
