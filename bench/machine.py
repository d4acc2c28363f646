"""Which machine a figure was measured on, and where its results live.

Every ``make bench`` module states the CPU's model, usable cores and the features that
decide the tower's speed (AVX2, AVX-512, BF16, FP16, VNNI, AMX), and saves its results under
``bench/results/<kind>/``, one folder per machine kind, so the figures of every kind
measured sit side by side in the repository instead of overwriting each other.
"""

from __future__ import annotations

import platform
from pathlib import Path

from service.engine.core.device import cpu_features, cpu_info, usable_cores

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    return cpu_info()[0] or platform.processor() or "unknown CPU"


def machine() -> str:
    """One line: cores, model and features, e.g. ``2 cores, AMD EPYC …, AVX2 AVX-512 BF16``."""
    return f"{usable_cores()} cores, {cpu_model()}, {' '.join(cpu_features()) or 'no AVX2'}, no GPU"


def machine_kind() -> str:
    """A folder name for this kind: its features and usable cores, e.g.
    ``avx2-avx-512-bf16-vnni-2c`` (``taskset -c 0`` makes it ``…-1c``)."""
    features = "-".join(name.lower() for name in cpu_features()) or "generic"
    return f"{features}-{usable_cores()}c"


def results_dir() -> Path:
    folder = RESULTS / machine_kind()
    folder.mkdir(parents=True, exist_ok=True)
    return folder
