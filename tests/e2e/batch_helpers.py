"""The collection and the command line that the batch-scoring tests share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

from tests.server_process import ROOT

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
