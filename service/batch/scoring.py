"""One path -> its rows, through the server's own engine.

Each image is its own ``engine.predict`` call: the engine's micro-batcher packs the calls
in flight into full batches, as it packs concurrent HTTP requests, and a file that fails
(missing, unreadable, not an image, corrupt) fails alone, as one ``error`` row, without
decoding any other image twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from service.batch.rows import Layout, Row, error_row, image_rows
from service.engine import InferenceEngine, NamedImage
from service.errors import ServiceError

log = logging.getLogger(__name__)

# Batch-only codes, beside the service's own (a server never reads files from disk).
FILE_NOT_FOUND = "file_not_found"
UNREADABLE_FILE = "unreadable_file"


class Scorer:
    def __init__(self, engine: InferenceEngine, layout: Layout) -> None:
        for name, ref in layout.models.items():
            if engine.task(name).ref != ref:
                raise RuntimeError(
                    f"task {name}: the engine serves {engine.task(name).ref}, the job expects "
                    f"{ref} (the registry changed while the job started?)"
                )
        self.engine = engine
        self.layout = layout
        self.faces = layout.faces

    async def score(self, path: str, file: str | None = None) -> list[Row]:
        """The rows of the image at ``file`` (default: ``path``), under the name ``path``."""
        try:
            data = await asyncio.to_thread(Path(file or path).read_bytes)
        except FileNotFoundError:
            return [error_row(self.layout, path, FILE_NOT_FOUND, f"{path}: no such file")]
        except OSError as exc:
            return [error_row(self.layout, path, UNREADABLE_FILE, f"{path}: {exc}")]
        try:
            answers = await self.engine.predict(
                [NamedImage(path, data)], list(self.layout.models), faces=self.faces
            )
            [result] = answers.images
        except ServiceError as exc:
            return [error_row(self.layout, path, exc.code, exc.message)]
        except Exception as exc:  # one odd file must not end a job of a million
            log.exception("unexpected failure on %s", path)
            return [error_row(self.layout, path, ServiceError.code, f"{path}: {exc!r}")]
        return image_rows(self.layout, path, result)

    async def score_all(
        self, paths: Sequence[str], files: Sequence[str | None] | None = None
    ) -> list[Row]:
        """Every path's rows, in order (the Ray actors' whole batch at once)."""
        files = files or [None] * len(paths)
        answers = await asyncio.gather(
            *(self.score(path, file) for path, file in zip(paths, files, strict=True))
        )
        return [row for rows in answers for row in rows]
