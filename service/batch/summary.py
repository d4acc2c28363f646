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
    seconds: float = 0.0

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
    def left(self) -> int:
        return self.total - self.skipped - self.scored

    def lines(self) -> list[str]:
        rate = self.scored / self.seconds if self.seconds > 0 else 0.0
        errors = sum(self.errors.values())
        by_code = ", ".join(f"{code} {n}" for code, n in sorted(self.errors.items()))
        lines = [
            f"scored {self.scored} images ({self.rows} rows) in {self.seconds:.1f} s "
            f"({rate:.1f} img/s)",
            f"ok {self.scored - errors}, errors {errors}" + (f" ({by_code})" if by_code else ""),
            f"skipped {self.skipped} already in the output; {self.left} left",
        ]
        if self.interrupted_by:
            lines.append(f"interrupted by {self.interrupted_by}: run again with --resume")
        return lines
