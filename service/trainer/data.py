"""Labelled image lists: the reference list format, CSV and folder-per-rank, with checks.

A *sample* is (path, rank index). Labels are integer rank indices 0..R-1; a
:class:`RankScale` maps them to values (age 0..100, 1930..1970) and optional labels.
"""

from __future__ import annotations

import csv
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from service.imaging.decode import ImageLimits, decode_image

log = logging.getLogger(__name__)
# Training reads the operator's own files: no pixel or aspect limit worth refusing them for.
TRAINING_LIMITS = ImageLimits(max_pixels=10**9, max_aspect_ratio=float("inf"))


@dataclass(frozen=True)
class RankScale:
    values: list[float]
    labels: list[str] | None = None

    @property
    def num_ranks(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Sample:
    path: Path
    rank: int


@dataclass(frozen=True)
class BadRow:
    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


class DataError(ValueError):
    """A fatal problem in a dataset file (or any bad row, with ``strict``)."""


def read_samples(
    source: Path, images_root: Path, num_ranks: int, strict: bool = False, check_images: bool = True
) -> list[Sample]:
    """Read a list file (``path label``), a CSV (``path,label``) or a folder of rank folders."""
    if source.is_dir():
        rows = _folder_rows(source)
        images_root = source
    elif source.suffix.lower() == ".csv":
        rows = _csv_rows(source)
    else:
        rows = _list_rows(source)
    samples, bad = [], []
    for line, raw_path, raw_label in rows:
        problem = _check_row(images_root, raw_path, raw_label, num_ranks, check_images)
        if problem:
            bad.append(BadRow(str(source), line, problem))
        else:
            samples.append(Sample(images_root / raw_path, int(raw_label)))
    if bad:
        for row in bad[:20]:
            log.warning("bad row %s", row)
        message = f"{len(bad)} bad rows in {source} (first: {bad[0]})"
        if strict:
            raise DataError(message)
        log.warning("%s; skipped", message)
    if not samples:
        raise DataError(f"no usable samples in {source}")
    return samples


def _list_rows(path: Path) -> list[tuple[int, str, str]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        rows.append((number, parts[0], parts[1] if len(parts) == 2 else ""))
    return rows


def _csv_rows(path: Path) -> list[tuple[int, str, str]]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        rows = [
            (n, r[0].strip(), r[1].strip() if len(r) > 1 else "")
            for n, r in enumerate(reader, 1)
            if r
        ]
    if rows and not rows[0][2].lstrip("-").isdigit():
        rows = rows[1:]  # a header such as "path,label"
    return rows


def _folder_rows(root: Path) -> list[tuple[int, str, str]]:
    rows = []
    for rank_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for number, image in enumerate(sorted(rank_dir.iterdir()), start=1):
            rows.append((number, f"{rank_dir.name}/{image.name}", rank_dir.name))
    return rows


def _check_row(root: Path, raw_path: str, raw_label: str, num_ranks: int, check: bool) -> str:
    if not raw_label.lstrip("-").isdigit():
        return f"label {raw_label!r} is not an integer rank index"
    if not 0 <= int(raw_label) < num_ranks:
        return f"label {raw_label} is outside 0..{num_ranks - 1}"
    path = root / raw_path
    if not path.is_file():
        return f"missing file {path}"
    if check:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as exc:  # Pillow raises many types for bad files
            return f"unreadable image {path}: {exc}"
    return ""


def few_shot(samples: list[Sample], shots: int, seed: int) -> list[Sample]:
    """At most ``shots`` samples per rank, drawn with ``seed``."""
    by_rank: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_rank[sample.rank].append(sample)
    rng = random.Random(seed)
    chosen = []
    for rank in sorted(by_rank):
        group = by_rank[rank]
        chosen += rng.sample(group, min(shots, len(group)))
    return chosen


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Samples decoded as the server decodes uploads (EXIF orientation, transparency on
    white, 16-bit range), then ``transform``ed. With ``image_size``, large images are also
    reduced as the server reduces them; without it they are decoded at full resolution."""

    def __init__(
        self, samples: list[Sample], transform: object, image_size: int | None = None
    ) -> None:
        self.samples = samples
        self.transform = transform
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        data = sample.path.read_bytes()
        image = decode_image(data, str(sample.path), TRAINING_LIMITS, self.image_size)
        return self.transform(image), sample.rank  # type: ignore[operator]
