"""What a job did: counts, errors by code, and the time, printed when it ends."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from service.batch.rows import Row


@dataclass
class Summary:
    total: int = 0  # paths in SRC
    skipped: int = 0  # already in OUT (--resume)
    scored: int = 0  # images answered in this run (error rows included)
    rows: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    interrupted_by: str | None = None
    started: float = field(default_factory=time.perf_counter)
    load_seconds: float = 0.0  # start-up: registry -> a warmed, calibrated engine
    seconds: float = 0.0  # scoring only, from the first image to the last row written

    def begin(self) -> None:
        """The engine is ready: what came before was start-up, what follows is scoring."""
        now = time.perf_counter()
        self.load_seconds, self.started = now - self.started, now

    def add(self, rows_of_one_image: list[Row]) -> None:
        self.scored += 1
        self.rows += len(rows_of_one_image)
        code = rows_of_one_image[0]["error"]
        if code is not None:
            self.errors[code] += 1

    def finish(self) -> Summary:
        self.seconds = time.perf_counter() - self.started
        return self

    @property
    def rate(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    @property
    def left(self) -> int:
        return self.total - self.skipped - self.scored

    def lines(self) -> list[str]:
        errors = sum(self.errors.values())
        by_code = ", ".join(f"{code} {n}" for code, n in sorted(self.errors.items()))
        startup = f", after {self.load_seconds:.1f} s of start-up" if self.load_seconds else ""
        lines = [
            f"scored {self.scored} images ({self.rows} rows) in {self.seconds:.1f} s "
            f"({self.rate:.1f} img/s){startup}",
            f"ok {self.scored - errors}, errors {errors}" + (f" ({by_code})" if by_code else ""),
            f"skipped {self.skipped} already in the output; {self.left} left",
        ]
        if self.interrupted_by:
            lines.append(f"interrupted by {self.interrupted_by}: run again with --resume")
        return lines
