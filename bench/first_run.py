"""``python -m bench.first_run``: seconds from ``make serve`` on an empty store to /readyz 200.

A new user's first run, after install: make builds the demo registry, then starts the
service, which loads and warms up. This starts ``make serve`` in its own process group on a
fresh store and a free port, polls /readyz, stops the group, and prints the figures
(demo build, service start, total) with the CPU they were measured on. Figures only:
docs/operating.md quotes them; no test asserts a duration (machines differ 10x in speed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.machine import machine
from service.engine.core.device import cpu_supports_bf16
from tests.server_process import ROOT, free_port

SERVICE_COMMAND = "-m service --model-store"  # the line make echoes when the demo is built


def time_to_ready(backbone: str, store: Path, timeout_s: float) -> dict[str, float | str]:
    """Run ``make serve`` on ``store`` until ready; return the phase times in seconds."""
    port = free_port()
    installed = "-o", ".venv/.installed"  # after install: never let make reinstall here
    command = ["make", *installed, "serve", f"STORE={store}", f"PORT={port}"]
    command.append(f"DEMO_BACKBONE={backbone}")
    start = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make and the service it starts: one group to stop
    )
    marks: dict[str, float] = {}
    lines: list[str] = []

    def watch() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if SERVICE_COMMAND in line and "serve_started" not in marks:
                marks["serve_started"] = time.monotonic() - start

    threading.Thread(target=watch, daemon=True).start()
    try:
        while time.monotonic() - start < timeout_s:
            if process.poll() is not None:
                raise RuntimeError(f"make serve exited {process.returncode}:\n{''.join(lines)}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    total = time.monotonic() - start
                    demo = marks.get("serve_started", float("nan"))
                    return {
                        "backbone": backbone,
                        "demo_build_s": round(demo, 1),
                        "service_start_s": round(total - demo, 1),
                        "total_s": round(total, 1),
                    }
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"not ready in {timeout_s} s:\n{''.join(lines)}")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="ViT-B-16", help="DEMO_BACKBONE to time")
    parser.add_argument("--runs", type=int, default=1, help="repeat on a fresh store each time")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    print(f"# {machine()}; bf16 tower: {cpu_supports_bf16()}; load {os.getloadavg()[0]:.2f}")
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="first-run-") as folder:
            result = time_to_ready(args.backbone, Path(folder) / "store", args.timeout)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
