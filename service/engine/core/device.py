"""Choosing the device and the numeric precision the vision tower runs in."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Placement:
    device: torch.device
    precision: str  # key of DTYPES

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.precision]


def cpu_supports_bf16() -> bool:
    """True where the CPU has native bf16 dot products (AVX512-BF16 or AMX), Linux only."""
    return "bf16" in native_precisions()


def configure_threads(threads: int, gil_switch_interval_s: float | None = None) -> int:
    """Intra-op threads for torch (0 = one per core), and optionally Python's GIL switch
    interval: forward passes in worker threads need the GIL between ops, so a short interval
    keeps the event loop from stalling them. Returns the number of threads set."""
    count = threads or usable_cores()
    torch.set_num_threads(count)
    if gil_switch_interval_s is not None:
        sys.setswitchinterval(gil_switch_interval_s)
    return count


def usable_cores() -> int:
    """The cores this process may run on (``taskset``, a container's cpuset), not the
    machine's: a pod pinned to one core must not lay out two workers of one thread each."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# What decides a CPU's fastest layout and precision, by the /proc/cpuinfo flags that show it.
CPU_FEATURES: dict[str, tuple[str, ...]] = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "BF16": ("avx512_bf16", "amx_bf16"),
    "FP16": ("avx512_fp16", "amx_fp16"),
    "VNNI": ("avx512_vnni", "avx_vnni"),
    "AMX": ("amx_tile",),
}


@functools.cache
def cpu_info() -> tuple[str, frozenset[str]]:
    """The CPU's model name and flags from /proc/cpuinfo (empty where it cannot be read)."""
    model, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = value.strip()
    except OSError:
        pass
    return model, frozenset(flags.split())


def cpu_features() -> list[str]:
    """The :data:`CPU_FEATURES` this CPU has (empty where /proc/cpuinfo cannot be read)."""
    flags = cpu_info()[1]
    return [name for name, shown_by in CPU_FEATURES.items() if flags & set(shown_by)]


def cpu_signature() -> dict[str, Any]:
    """What a measurement depends on in the machine: the CPU's model and flags, and the
    cores this process may run on (a pod's CPU limit or ``taskset`` changes the answer)."""
    model, flags = cpu_info()
    digest = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16]
    return {"cpu": model, "flags_sha256": digest, "usable_cores": usable_cores()}


def native_precisions() -> list[str]:
    """Float precisions this CPU computes natively, fastest first (fp32 always)."""
    features = cpu_features()
    return [*(p for p, f in (("bf16", "BF16"), ("fp16", "FP16")) if f in features), "fp32"]


def resolve_placement(device: str = "auto", precision: str = "auto") -> Placement:
    """'auto' picks CUDA if present; precision 'auto' is fp16 on CUDA, bf16 on a bf16 CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available")
    if precision == "auto":
        if resolved.type == "cuda":
            precision = "fp16"
        elif cpu_supports_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    if precision not in DTYPES:
        raise ValueError(f"precision {precision!r} is not one of {sorted(DTYPES)}")
    if resolved.type == "cpu" and precision == "fp16":
        log.warning("fp16 on CPU is slow and poorly supported; bf16 or fp32 is better")
    return Placement(resolved, precision)
