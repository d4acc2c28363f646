"""A registry written by one user and served by another, as a container's uid serves a
store that ``make demo`` wrote on the host and mounted read-only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.registry import ModelStore
from service.trainer.architectures import BuiltClip
from service.trainer.tasks import DECADE
from service.trainer.zeroshot import publish_zeroshot
from tests import images
from tests.server_process import ROOT, free_port, launch, stop_server

pytestmark = pytest.mark.slow
NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture
def host_store(tiny_clip: BuiltClip) -> Iterator[Path]:
    """Written by this user under the usual umask, in a folder other users may enter
    (pytest's own tmp folders are 0700, which would hide any store from them)."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        previous = os.umask(0o022)
        try:
            publish_zeroshot(ModelStore(Path(folder) / "store"), tiny_clip, [DECADE], "tests")
        finally:
            os.umask(previous)
        yield Path(folder) / "store"


def _require_another_user() -> None:
    """Skip where this test cannot say anything: not root, or a checkout (interpreter,
    venv, repository) that the other uid cannot read, e.g. one under a 0700 home."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to start the server as another uid")
    probe = subprocess.run(
        [*AS_NOBODY, sys.executable, "-c", "import service.api.app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"uid {NOBODY} cannot import this checkout: {probe.stderr[-400:]}")


def test_a_store_written_by_this_user_is_served_by_another(
    host_store: Path, tmp_path: Path
) -> None:
    _require_another_user()
    port = free_port()
    command = [*AS_NOBODY, sys.executable, "-m", "service"]
    command += ["--model-store", str(host_store), "--port", str(port)]
    server = launch(command, port, tmp_path / "server.log")
    try:
        status = Path(f"/proc/{server.process.pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(NOBODY)] * 4  # really served by the other user
        with server.client() as client:
            ready = client.get("/readyz")
            answer = client.post(
                "/v1/decade/predict", files=[("image", ("a.png", images.png(), "image/png"))]
            )
        assert ready.status_code == 200, ready.text
        assert answer.status_code == 200, answer.text
        (prediction,) = answer.json()["predictions"]
        assert 1930 <= prediction["expected"] <= 1970
    finally:
        stop_server(server)
