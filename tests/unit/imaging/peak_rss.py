"""Peak memory and time of preprocessing one image, each in a fresh forked process.

tracemalloc sees only Python's allocations, not libtiff's or libwebp's, so this reads the
kernel's own figure: the process's peak resident set (VmHWM), reset just before the image
is decoded (``/proc/self/clear_refs`` = 5). The parent imports torch and open_clip once;
each image is preprocessed in a child forked from it, so no allocator cache carries over
from one image to the next.

    python -m tests.unit.imaging.peak_rss SIZE MAX_PIXELS FILE... -> one JSON line per file
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from service.errors import ServiceError
from service.imaging import ImageLimits, Preprocessor
from service.registry.manifest import Preprocess

MB = 1 << 20


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(preprocessor: Preprocessor, data: bytes) -> dict[str, object]:
    """Preprocess ``data`` here; the outcome, peak RSS growth (MB) and time (ms)."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    try:
        shape = list(preprocessor(data, "bomb").shape)
        outcome = "ok"
    except ServiceError as exc:
        shape, outcome = [], f"{type(exc).__name__}: {exc.message}"
    elapsed = time.perf_counter() - start
    peak = _status_kb("VmHWM")
    return {
        "outcome": outcome,
        "shape": shape,
        "peak_mb": round((peak - before) / 1024, 1),
        "ms": round(elapsed * 1000, 1),
    }


def in_child(preprocessor: Preprocessor, path: Path) -> dict[str, object]:
    data = path.read_bytes()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report through the pipe, leave without cleanup
        os.close(read)
        try:
            report = measure(preprocessor, data)
        except BaseException as exc:  # a crash is a result too
            report = {"outcome": f"crash: {type(exc).__name__}: {exc}"}
        os.write(write, json.dumps(report).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    report = json.loads(text) if text else {"outcome": f"killed: wait status {status}"}
    return {"file": path.name, **report}


def main(argv: list[str]) -> None:
    size, max_pixels, *paths = argv
    settings = Preprocess(image_size=int(size), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    preprocessor = Preprocessor(settings, ImageLimits(max_pixels=int(max_pixels)))
    for path in paths:
        print(json.dumps(in_child(preprocessor, Path(path))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
