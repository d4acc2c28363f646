"""The schema as a contract: a client generated from the live /openapi.json calls every route
and gets typed answers, errors included.

openapi-python-client is installed from the package index into a throwaway venv (its pins
must not touch the project's), generates a client from a real server's schema, and the
calls run in that venv (tests/e2e/generated_client_calls.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import images
from tests.server_process import RunningServer, serving

pytestmark = pytest.mark.slow

GENERATOR = "openapi-python-client>=0.29,<0.30"
CALLS = Path(__file__).with_name("generated_client_calls.py")
API_KEY, ADMIN_KEY = "client-test-key", "client-test-admin"
# Each call of generated_client_calls.py and the class its ``parsed`` must be.
TYPED = {
    "health": "Health",
    "ready": "Health",
    "metrics": "str",
    "listModels": "ModelList",
    "getModel": "ModelInfo",
    "predict": "TaskPredictResponse",
    "predictTasks": "MultiPredictResponse",
    "reload": "ReloadResponse",
}
ERRORS = {  # parsed as ErrorResponse, with this status and code
    "predict/no key": (401, "unauthorized"),
    "getModel/unknown": (404, "unknown_task"),
    "predict/no image": (422, "no_image"),
    "predict/not an image": (415, "unsupported_media_type"),
}
CONFIG = "package_name_override: oclip_client\npost_hooks: []\n"  # no formatter to run


@pytest.fixture(scope="module")
def generator_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh venv with the generator (and so httpx and attrs, which
    the generated client needs)."""
    root = tmp_path_factory.mktemp("generator-venv")
    venv.create(root, with_pip=True)
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--disable-pip-version-check", GENERATOR], check=True, timeout=600)
    return root / "bin"


@pytest.fixture(scope="module")
def keyed_server(
    tiny_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    env = {"OCLIP_API_KEYS": API_KEY, "OCLIP_ADMIN_API_KEYS": ADMIN_KEY}
    with serving(tiny_store, tmp_path_factory.mktemp("client") / "log", env) as server:
        yield server


@pytest.fixture(scope="module")
def generated(
    generator_bin: Path, keyed_server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """The folder holding the generated package ``oclip_client``, and the generator's
    output (its warnings)."""
    work = tmp_path_factory.mktemp("generated")
    (work / "config.yml").write_text(CONFIG)
    command = [str(generator_bin / "openapi-python-client"), "generate", "--config", "config.yml"]
    command += ["--url", f"{keyed_server.url}/openapi.json", "--meta", "none"]
    command += ["--output-path", "oclip_client"]
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return work, output


def test_generator_warns_only_about_the_raw_image_body(generated: tuple[Path, str]) -> None:
    """The raw ``image/*`` body is not supported by the generator (docs/api.md says so);
    nothing else of the schema may be dropped."""
    _, output = generated
    warnings = re.findall(r"^WARNING parsing (\S+ \S+)", output, re.M)
    assert sorted(warnings) == ["POST /v1/predict", "POST /v1/{task}/predict"], output
    assert output.count("Unsupported content type image/*") == len(warnings), output


def test_every_route_answers_typed_through_the_generated_client(
    generator_bin: Path,
    generated: tuple[Path, str],
    keyed_server: RunningServer,
    tmp_path: Path,
) -> None:
    work, _ = generated
    image = tmp_path / "photo.jpg"
    image.write_bytes(images.jpeg())
    env = {**os.environ, "PYTHONPATH": str(work)}
    command = [str(generator_bin / "python"), str(CALLS), keyed_server.url, API_KEY, ADMIN_KEY]
    result = subprocess.run(
        [*command, str(image)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    calls = {line["call"]: line for line in map(json.loads, result.stdout.splitlines())}
    answered = {name: (c["status"], c["parsed"], c.get("code")) for name, c in calls.items()}
    assert answered == {
        **{name: (200, model, None) for name, model in TYPED.items()},
        **{name: (status, "ErrorResponse", code) for name, (status, code) in ERRORS.items()},
    }
    assert calls["metrics"]["has_series"] is True
    assert calls["listModels"]["tasks"] == ["aesthetics", "age", "decade"]
    assert calls["getModel"]["task"] == "age"
    assert calls["predict"]["images"] == 2
    assert calls["predictTasks"]["tasks"] == ["age", "decade"]
    assert calls["reload"]["status_text"] == "reloaded"
