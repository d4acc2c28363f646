"""Local-mode batch scoring throughput (``python -m service.batch``), for the bench report.

A folder of identical images (decoding work is the same for every copy) is scored by the
real CLI in its own process; its summary line gives the scoring rate, start-up excluded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.server_process import ROOT

RATE = re.compile(r"scored (\d+) images .* in ([\d.]+) s \(([\d.]+) img/s\), after ([\d.]+) s")


def batch_rate(store: Path, work: Path, name: str, data: bytes, count: int) -> dict[str, float]:
    """Score ``count`` copies of ``data``; the CLI's own figures (img/s, seconds, start-up)."""
    folder, out = work / f"batch-{name}", work / f"batch-{name}.parquet"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    folder.mkdir(parents=True)
    for index in range(count):
        (folder / f"{index:05d}.jpg").write_bytes(data)
    command = [sys.executable, "-m", "service.batch", "--model-store", str(store)]
    command += ["--tasks", "age", "--input", str(folder), "--output", str(out), "--no-progress"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    match = RATE.search(result.stdout)
    if match is None:
        raise RuntimeError(f"no summary in the batch output:\n{result.stdout}\n{result.stderr}")
    scored, seconds, rate, startup = match.groups()
    if int(scored) != count:
        raise RuntimeError(f"batch scored {scored} of {count} images:\n{result.stdout}")
    return {
        "images": count,
        "img_s": count / float(seconds) if float(seconds) else float(rate),  # more digits
        "seconds": float(seconds),
        "startup_s": float(startup),
    }


def bench_batch(
    store: Path, work: Path, payloads: dict[str, bytes], quick: bool, limit_now: Callable[[], float]
) -> dict[str, Any]:
    """Each payload's batch rate, between two measures of the in-process limit."""
    near = limit_now()
    runs = {}
    for name, data in payloads.items():
        count = (48 if quick else 200) if name == "224px" else (24 if quick else 64)
        runs[name] = batch_rate(store, work, name, data, count)
        print(f"  batch  {name:6} {runs[name]['img_s']:6.1f} img/s", flush=True)
    return {"limit_near": near, "limit_after": limit_now(), "runs": runs}
