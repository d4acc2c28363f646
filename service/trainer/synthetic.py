"""Synthetic ordinal data for tests and demos: the rank is visible as the size of a disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def disk_image(rank: int, num_ranks: int, size: int, rng: np.random.Generator) -> Image.Image:
    """A noisy background with a bright disk whose radius grows with the rank."""
    background = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    image = Image.fromarray(background, "RGB")
    radius = size * (0.08 + 0.34 * rank / max(num_ranks - 1, 1))
    cx, cy = rng.uniform(radius, size - radius, size=2)
    colour = tuple(int(c) for c in rng.integers(170, 256, size=3))
    ImageDraw.Draw(image).ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
    return image


def write_synthetic(
    root: Path, num_ranks: int, per_rank: dict[str, int], size: int = 48, seed: int = 0
) -> dict[str, Path]:
    """Write images under ``root/images`` and one list file per split (``path label``)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lists = {}
    for split, count in per_rank.items():
        lines = []
        for rank in range(num_ranks):
            for index in range(count):
                name = f"images/{split}_{rank:03d}_{index:03d}.png"
                disk_image(rank, num_ranks, size, rng).save(root / name)
                lines.append(f"{name} {rank}")
        lists[split] = root / f"{split}.txt"
        lists[split].write_text("\n".join(lines) + "\n")
    return lists
