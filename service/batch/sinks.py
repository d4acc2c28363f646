"""Where rows go: Parquet (a folder of part files), JSONL or CSV, chosen by OUT's extension.

Every sink keeps OUT valid at all times, so an interrupted job loses at most the rows it
had not yet handed over, and ``--resume`` reads back which paths are done:

- **Parquet**: OUT is a folder of part files (a Parquet dataset, as Ray Data's
  ``write_parquet`` also writes). The open part is a hidden ``.part-*.tmp`` file that
  readers ignore; each chunk is one row group, and a part is closed and renamed into place
  every ``part_rows`` rows or ``part_seconds`` seconds, and on exit (Ctrl-C and SIGTERM
  included). A ``kill -9`` loses only the open part, which ``--resume`` redoes.
- **JSONL / CSV**: one line per row, appended and flushed to disk per chunk. A line cut
  short by a hard kill is dropped when the job resumes.
"""

from __future__ import annotations

import csv
import json
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq

from service.batch.rows import Layout, Row, to_table

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


class OutputError(ValueError):
    """OUT cannot be written as asked: unknown format, or it exists without ``--resume``, or
    it holds other columns than this job writes."""


class Sink(Protocol):
    def done_paths(self) -> set[str]: ...

    def write(self, rows: list[Row]) -> None: ...

    def close(self) -> None: ...


def output_format(out: Path) -> str:
    try:
        return FORMATS[out.suffix.lower()]
    except KeyError:
        raise OutputError(
            f"{out}: unknown output format; use one of {', '.join(sorted(FORMATS))}"
        ) from None


def check_output(out: Path, resume: bool) -> str:
    """OUT's format, once it is known that writing there overwrites nothing."""
    kind = output_format(out)
    if out.exists() and not resume:
        raise OutputError(f"{out} exists; pass --resume to add to it, or choose another OUT")
    if kind == "parquet" and out.is_file():
        raise OutputError(f"{out} is a file; Parquet output is a folder of part files")
    return kind


def open_sink(out: Path, layout: Layout, resume: bool, **options: Any) -> Sink:
    kind = check_output(out, resume)
    if kind == "parquet":
        return ParquetSink(out, layout, **options)
    if kind == "jsonl":
        return JsonlSink(out, layout)
    return CsvSink(out, layout)


def _check_columns(out: Path, found: Iterable[str], layout: Layout) -> None:
    found = list(found)
    if found != layout.columns:
        raise OutputError(
            f"{out} holds other columns than this job writes (different tasks or flags?): "
            f"found {found}, expected {layout.columns}"
        )


class ParquetSink:
    def __init__(
        self, out: Path, layout: Layout, part_rows: int = 100_000, part_seconds: float = 60.0
    ) -> None:
        self.out, self.layout = out, layout
        self.part_rows, self.part_seconds = part_rows, part_seconds
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._rows = 0
        self._opened = 0.0
        out.mkdir(parents=True, exist_ok=True)
        for leftover in out.glob(".part-*.tmp"):  # the open part of a killed job
            leftover.unlink()

    def parts(self) -> list[Path]:
        return sorted(p for p in self.out.glob("*.parquet") if not p.name.startswith((".", "_")))

    def done_paths(self) -> set[str]:
        parts = self.parts()
        if not parts:
            return set()
        _check_columns(self.out, pq.read_schema(parts[0]).names, self.layout)
        return set(pq.read_table(parts, columns=["path"]).column("path").to_pylist())

    def write(self, rows: list[Row]) -> None:
        if not rows:
            return
        if self._writer is None:
            self._tmp = self.out / f".part-{uuid.uuid4().hex[:12]}.tmp"
            self._writer = pq.ParquetWriter(self._tmp, self.layout.schema)
            self._rows, self._opened = 0, time.monotonic()
        self._writer.write_table(to_table(self.layout, rows))
        self._rows += len(rows)
        if self._rows >= self.part_rows or time.monotonic() - self._opened >= self.part_seconds:
            self._seal()

    def _seal(self) -> None:
        if self._writer is None or self._tmp is None:
            return
        self._writer.close()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        os.replace(self._tmp, self.out / f"part-{stamp}-{self._tmp.stem.split('-')[1]}.parquet")
        self._writer, self._tmp = None, None

    def close(self) -> None:
        self._seal()


def _drop_cut_line(path: Path) -> None:
    """Truncate a file after its last newline: a hard kill may have cut the last row."""
    with path.open("rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


class _LineSink:
    """Append-only text output, flushed to disk after every chunk."""

    def __init__(self, out: Path, layout: Layout) -> None:
        self.out, self.layout = out, layout
        fresh = not out.exists() or out.stat().st_size == 0
        if not fresh:
            _drop_cut_line(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        self._handle = out.open("a", newline="", encoding="utf-8")
        self._fresh = fresh

    def _flush(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


class JsonlSink(_LineSink):
    def done_paths(self) -> set[str]:
        done: set[str] = set()
        if self._fresh:
            return done
        with self.out.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                row = json.loads(line)
                if number == 0:
                    _check_columns(self.out, row, self.layout)
                done.add(row["path"])
        return done

    def write(self, rows: list[Row]) -> None:
        self._handle.writelines(json.dumps(row, allow_nan=False) + "\n" for row in rows)
        self._flush()


class CsvSink(_LineSink):
    """Empty cells are nulls; a probability list is one cell holding a JSON array."""

    def __init__(self, out: Path, layout: Layout) -> None:
        super().__init__(out, layout)
        self._writer = csv.DictWriter(self._handle, fieldnames=layout.columns)
        if self._fresh:
            self._writer.writeheader()
            self._flush()

    def done_paths(self) -> set[str]:
        if self._fresh:
            return set()
        with self.out.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            _check_columns(self.out, reader.fieldnames or [], self.layout)
            return {row["path"] for row in reader}

    def write(self, rows: list[Row]) -> None:
        self._writer.writerows(
            {k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows
        )
        self._flush()
