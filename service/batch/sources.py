"""SRC -> the list of image paths to score.

SRC is a folder (searched recursively, by image extension), a glob, or a ``.txt`` (one path
a line), ``.csv`` or ``.parquet`` file with a ``path`` column. Listed paths are kept as
written (relative ones are resolved against the list file's folder), so a missing file is
scored as an error row rather than dropped.
"""

from __future__ import annotations

import csv
import glob
from pathlib import Path

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".mpo"}
)
LIST_SUFFIXES = (".txt", ".csv", ".parquet")


class SourceError(ValueError):
    """SRC cannot be read, or names no image: the job stops before loading any model."""


def resolve_source(source: str) -> list[str]:
    """Every path SRC names, without duplicates, in a stable order."""
    path = Path(source)
    if path.is_dir():
        paths = [
            str(p)
            for p in sorted(path.rglob("*"))
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        ]
    elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        paths = _listed(path)
    elif glob.has_magic(source):
        paths = sorted(p for p in glob.glob(source, recursive=True) if Path(p).is_file())
    else:
        raise SourceError(f"{source}: not a folder, a glob, or a .txt/.csv/.parquet list of paths")
    paths = list(dict.fromkeys(paths))
    if not paths:
        raise SourceError(f"{source}: no image to score (extensions: {_extensions()})")
    return paths


def _listed(list_file: Path) -> list[str]:
    suffix = list_file.suffix.lower()
    if suffix == ".txt":
        names = [line.strip() for line in list_file.read_text().splitlines()]
    elif suffix == ".csv":
        with list_file.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if "path" not in (reader.fieldnames or []):
                raise SourceError(f"{list_file}: no 'path' column (columns: {reader.fieldnames})")
            names = [row["path"] for row in reader]
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(list_file)
        if "path" not in table.column_names:
            raise SourceError(f"{list_file}: no 'path' column (columns: {table.column_names})")
        names = [str(name) for name in table.column("path").to_pylist() if name is not None]
    base = list_file.parent
    return [str(base / name) for name in names if name and not name.startswith("#")]


def _extensions() -> str:
    return ", ".join(sorted(IMAGE_EXTENSIONS))
