"""Fixtures shared by the e2e modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import images


@pytest.fixture(scope="session")
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
