"""``python -m service.batch`` on what users hand it: a list file with a missing path (JSONL
and CSV out), refused invocations, and ``--faces``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from service.batch.__main__ import main
from tests import images
from tests.e2e.batch_helpers import (
    ATOL,
    batch_command,
)


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
