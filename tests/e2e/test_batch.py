"""``python -m service.batch`` end to end: a folder of ~300 mixed images scored by the CLI in
a subprocess, checked against a real server's HTTP answers, interrupted by SIGTERM and
resumed, and run again on a local Ray."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.batch_helpers import (
    ATOL,
    BAD_FILES,
    FIELDS,
    TASKS,
    batch_command,
    by_path,
    run_batch,
)
from tests.server_process import ROOT, serving


@pytest.fixture(scope="module")
def local_run(
    tiny_store: Path, collection: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("local") / "scores.parquet"
    result = run_batch(*batch_command(tiny_store, collection, out))
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.fixture(scope="module")
def http_answers(
    tiny_store: Path, collection: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """path -> the server's JSON answer for that file (or its error body), fp32 like the job."""
    log = tmp_path_factory.mktemp("http") / "server.log"
    paths = sorted(p for p in collection.rglob("*") if p.is_file() and p.suffix != ".txt")
    answers: dict[str, dict[str, Any]] = {}
    with (
        serving(tiny_store, log, env={"OCLIP_PRECISION": "fp32"}) as server,
        server.client() as client,
    ):
        for path in paths:
            reply = client.post(
                "/v1/predict",
                params={"tasks": ",".join(TASKS)},
                files=[("image", (path.name, path.read_bytes(), "application/octet-stream"))],
            )
            answers[str(path)] = reply.json()
    return answers


def test_rows_match_the_http_answers(
    local_run: tuple[Path, subprocess.CompletedProcess[str]],
    http_answers: dict[str, dict[str, Any]],
    collection: Path,
) -> None:
    out, _ = local_run
    rows = by_path(pq.read_table(out))
    assert set(rows) == set(http_answers)  # every image file once; readme.txt not listed
    compared = 0
    for path, answer in http_answers.items():
        row = rows[path]
        if "error" in answer:
            assert row["error"] == answer["error"]["code"], path
            assert all(row[f"{task}_expected"] is None for task in TASKS)
            continue
        assert row["error"] is None, (path, row["error_message"])
        for task in TASKS:
            served = answer["predictions"][0]["results"][task]
            got = [row[f"{task}_{name}"] for name in FIELDS]
            want = [served["expected"], served["mode"], served["median"]]
            want += [served["interval"]["low"], served["interval"]["high"]]
            assert got == pytest.approx(want, abs=ATOL), (path, task)
            probabilities = served["distribution"]["probabilities"]
            assert row[f"{task}_probabilities"] == pytest.approx(probabilities, abs=ATOL)
            assert row[f"{task}_version"] == answer["models"][task]["version"]
            assert row[f"{task}_backbone"] == answer["models"][task]["backbone"]
        compared += 1
    assert compared == 296
    errors = {str(collection / name): code for name, code in BAD_FILES.items()}
    assert {path: row["error"] for path, row in rows.items() if row["error"]} == errors


def test_parquet_has_the_documented_columns_and_types(
    local_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = local_run
    assert out.is_dir() and list(out.glob("part-*.parquet"))
    schema = pq.read_table(out).schema
    expected = [("path", pa.string())]
    for task in TASKS:
        expected += [(f"{task}_{name}", pa.float64()) for name in FIELDS]
        expected.append((f"{task}_probabilities", pa.list_(pa.float64())))
        expected += [(f"{task}_version", pa.string()), (f"{task}_backbone", pa.string())]
    expected += [("error", pa.string()), ("error_message", pa.string())]
    assert [(field.name, field.type) for field in schema] == expected
    section = (ROOT / "docs/batch.md").read_text()
    for name in ("path", "error", "error_message", *(f"{{task}}_{n}" for n in FIELDS)):
        assert f"`{name}`" in section, name


def test_progress_bar_and_summary(
    local_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, result = local_run
    assert re.search(r"scoring: 100%.*300/300.*img/s", result.stderr), result.stderr[-2000:]
    assert "scored 300 images (300 rows)" in result.stdout
    assert "ok 296, errors 4 (invalid_image 2, unsupported_media_type 2)" in result.stdout


def progress_of(stderr: str) -> int:
    counts = re.findall(r"(\d+)/300 ", stderr)
    return int(counts[-1]) if counts else 0


def test_sigterm_halfway_then_resume_gives_every_row_once(
    tiny_store: Path,
    collection: Path,
    local_run: tuple[Path, subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    out = tmp_path / "scores.parquet"
    command = batch_command(tiny_store, collection, out, "--batch-size", "1", "--workers", "1")
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stderr is not None
    seen = ""
    while process.poll() is None and progress_of(seen) < 100:
        chunk = os.read(process.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk.decode(errors="replace")
    process.send_signal(signal.SIGTERM)
    stdout, rest = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, seen + rest.decode()
    assert "interrupted by SIGTERM" in stdout.decode()

    first = by_path(pq.read_table(out))  # a valid dataset, answered images only
    assert 100 <= len(first) < 300

    again = run_batch(*command, "--resume")
    assert again.returncode == 0, again.stderr
    assert f"skipped {len(first)} already in the output" in again.stdout
    rows = by_path(pq.read_table(out))  # by_path fails on a duplicate
    full = by_path(pq.read_table(local_run[0]))
    assert set(rows) == set(full)
    for path, row in rows.items():
        assert row["error"] == full[path]["error"]
        for task in TASKS:
            for name in FIELDS:
                a, b = row[f"{task}_{name}"], full[path][f"{task}_{name}"]
                assert (a is None and b is None) or math.isclose(a, b, abs_tol=ATOL), path


def test_ray_gives_the_same_rows(
    tiny_store: Path,
    collection: Path,
    local_run: tuple[Path, subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "ray.parquet"
    command = batch_command(tiny_store, collection, out, "--ray", "--pack-store")
    result = run_batch(*command, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "ok 296, errors 4" in result.stdout
    ray_rows = by_path(pq.read_table(out))
    local_rows = by_path(pq.read_table(local_run[0]))
    assert set(ray_rows) == set(local_rows)
    for path, row in ray_rows.items():
        for column, value in row.items():
            expected = local_rows[path][column]
            if isinstance(value, float | list):
                assert value == pytest.approx(expected, abs=ATOL), (path, column)
            else:
                assert value == expected, (path, column)
