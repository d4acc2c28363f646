"""Sinks after a hard kill (``kill -9``): what was sealed or flushed is read back, the cut
tail is not, and ``--resume`` then continues without a duplicate."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from service.batch.rows import Layout, error_row
from service.batch.sinks import OutputError, open_sink
from service.engine.post import ModelRef

LAYOUT = Layout({"age": ModelRef("age", "v1", "tiny")})


def rows(*names: str) -> list[dict[str, object]]:
    return [error_row(LAYOUT, name, "invalid_image", "bad\nfile") for name in names]


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_line_cut_by_a_kill_is_dropped_on_resume(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"scores.{suffix}"
    sink = open_sink(out, LAYOUT, resume=False)
    sink.write(rows("a.jpg", "b.jpg"))
    sink.close()
    with out.open("a") as handle:
        handle.write('{"path": "c.jpg", "age_exp' if suffix == "jsonl" else "c.jpg,1.5,")
    sink = open_sink(out, LAYOUT, resume=True)
    assert sink.done_paths() == {"a.jpg", "b.jpg"}
    sink.write(rows("c.jpg"))
    sink.close()
    again = open_sink(out, LAYOUT, resume=True)
    assert again.done_paths() == {"a.jpg", "b.jpg", "c.jpg"}
    again.close()
    assert len(out.read_text().splitlines()) == 3 + (suffix == "csv")  # + the header


def test_parquet_open_part_of_a_killed_job_is_ignored_then_removed(tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    sink = open_sink(out, LAYOUT, resume=False, part_rows=2)
    sink.write(rows("a.jpg", "b.jpg"))  # sealed: two rows reach part_rows
    sink.write(rows("c.jpg"))  # still in the hidden open part; the process dies here
    assert pq.read_table(out).column("path").to_pylist() == ["a.jpg", "b.jpg"]
    assert len(list(out.glob(".part-*.tmp"))) == 1
    resumed = open_sink(out, LAYOUT, resume=True)
    assert resumed.done_paths() == {"a.jpg", "b.jpg"}
    assert not list(out.glob(".part-*.tmp"))
    resumed.write(rows("c.jpg"))
    resumed.close()
    assert sorted(pq.read_table(out).column("path").to_pylist()) == ["a.jpg", "b.jpg", "c.jpg"]


def test_resume_refuses_an_output_of_another_job(tmp_path: Path) -> None:
    out = tmp_path / "scores.jsonl"
    sink = open_sink(out, LAYOUT, resume=False)
    sink.write(rows("a.jpg"))
    sink.close()
    other = Layout({"decade": ModelRef("decade", "v1", "tiny")})
    with pytest.raises(OutputError, match="other columns"):
        open_sink(out, other, resume=True).done_paths()
