"""``python -m service.batch`` end to end: a folder of ~300 mixed images scored by the CLI in
a subprocess, checked against a real server's HTTP answers, interrupted by SIGTERM and
resumed, and run again on a local Ray."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.batch.__main__ import main
from tests import images
from tests.server_process import ROOT, serving

pytestmark = pytest.mark.slow

TASKS = ("age", "decade")
FIELDS = ("expected", "mode", "median", "low", "high")
ATOL = 1e-5
# name -> the error code the service gives that file
BAD_FILES = {
    "broken/truncated.jpg": "invalid_image",
    "broken/empty.webp": "invalid_image",
    "broken/garbage.png": "unsupported_media_type",
    "notes.jpg": "unsupported_media_type",  # a text file with an image's extension
}


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """296 good images (JPEG, PNG, WebP, in subfolders, various sizes), 4 bad files, and a
    .txt file that the folder source must not pick up."""
    root = tmp_path_factory.mktemp("collection")
    for index in range(296):
        width, height = 48 + (index * 7) % 120, 48 + (index * 13) % 90
        picture = images.gradient(width, height, seed=index)
        fmt, suffix = [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")][index % 3]
        folder = root / f"set{index % 4}" / ("deep" if index % 5 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{index:03d}.{suffix}").write_bytes(images.encode(picture, fmt))
    (root / "broken").mkdir()
    (root / "broken/truncated.jpg").write_bytes(images.jpeg(120, 90)[:300])
    (root / "broken/empty.webp").write_bytes(b"")
    (root / "broken/garbage.png").write_bytes(os.urandom(2000))
    (root / "notes.jpg").write_text("not an image, only some words\n")
    (root / "readme.txt").write_text("not listed: no image extension\n")
    return root


def batch_command(store: Path, source: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "service.batch",
        "--model-store",
        str(store),
        "--tasks",
        ",".join(TASKS),
        "--input",
        str(source),
        "--output",
        str(out),
        "--precision",
        "fp32",
        "--distribution",
        *extra,
    ]


def run_batch(*command: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], cwd=ROOT, capture_output=True, text=True, **kwargs
    )


def by_path(table: pa.Table) -> dict[str, dict[str, Any]]:
    rows = table.to_pylist()
    found = {row["path"]: row for row in rows}
    assert len(found) == len(rows), "a path appears twice"
    return found


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


def test_list_source_with_a_missing_file_jsonl_and_csv(
    tiny_store: Path, collection: Path, tmp_path: Path
) -> None:
    listed = sorted(str(p) for p in (collection / "set1").rglob("*.png"))[:5]
    listing = tmp_path / "list.csv"
    listing.write_text("path\n" + "\n".join([*listed, "gone.jpg"]) + "\n")
    answers = {}
    for suffix in ("jsonl", "csv"):
        out = tmp_path / f"scores.{suffix}"
        args = batch_command(tiny_store, listing, out, "--no-progress")[3:]
        assert main(args) == 0
        assert main([*args, "--resume"]) == 0  # everything is done: nothing added
        if suffix == "jsonl":
            rows = [json.loads(line) for line in out.read_text().splitlines()]
        else:
            import csv

            with out.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        assert [row["path"] for row in rows] == [*listed, str(tmp_path / "gone.jpg")]
        assert rows[-1]["error"] == "file_not_found"
        answers[suffix] = rows
    for as_json, as_csv in zip(answers["jsonl"][:-1], answers["csv"][:-1], strict=True):
        # two runs: batches differ, so the last bits may too
        assert float(as_csv["age_expected"]) == pytest.approx(as_json["age_expected"], abs=ATOL)
        probabilities = json.loads(as_csv["age_probabilities"])
        assert probabilities == pytest.approx(as_json["age_probabilities"], abs=ATOL)


def test_refusals_exit_non_zero_with_a_message(
    tiny_store: Path, collection: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "old.jsonl"
    existing.write_text("keep me\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no image here")
    cases = {
        "no image to score": batch_command(tiny_store, empty, tmp_path / "a.jsonl"),
        "exists; pass --resume": batch_command(tiny_store, collection, existing),
        "unknown output format": batch_command(tiny_store, collection, tmp_path / "a.xlsx"),
        "unknown task": [
            *batch_command(tiny_store, collection, tmp_path / "b.csv"),
            "--tasks",
            "x",
        ],
    }
    for message, command in cases.items():
        assert main(command[3:]) == 2, message
        assert message in capsys.readouterr().err
    assert existing.read_text() == "keep me\n"  # no silent overwrite
    assert not (tmp_path / "a.jsonl").exists()


def test_faces_flag(tiny_store: Path, tmp_path: Path) -> None:
    """A portrait gets one row per face with its box; a faceless image one row, no face."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    (folder / "gradient.jpg").write_bytes(images.jpeg(120, 90))
    out = tmp_path / "faces.parquet"
    code = main([*batch_command(tiny_store, folder, out, "--faces", "--no-progress")[3:]])
    assert code == 0
    rows = pq.read_table(out).to_pylist()
    faces = Counter(row["path"].rsplit("/", 1)[1] for row in rows if row["face_index"] is not None)
    assert faces["astronaut.png"] >= 1 and faces["gradient.jpg"] == 0
    portrait = next(row for row in rows if row["path"].endswith("astronaut.png"))
    assert portrait["box_width"] > 0 and portrait["age_expected"] is not None
