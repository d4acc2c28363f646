"""The output's columns and the rows built from the engine's answers.

One row per image (per face with ``--faces``). Every format carries the same columns in
the same order; :func:`output_schema` is their one definition, with Parquet types.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from service.engine.post import ImageResult, ModelRef, TaskPrediction

Row = dict[str, Any]
SUMMARY_FIELDS = ("expected", "mode", "median", "low", "high")
FACE_FIELDS = ("box_x", "box_y", "box_width", "box_height")


@dataclass(frozen=True)
class Layout:
    """What one job writes: its tasks (and the model that answers each) and its flags."""

    models: dict[str, ModelRef]  # task -> version and backbone, in column order
    distribution: bool = False
    faces: bool = False

    # Cached: every output row starts from the columns, and every chunk is typed by them.
    @functools.cached_property
    def schema(self) -> pa.Schema:
        return output_schema(list(self.models), self.distribution, self.faces)

    @functools.cached_property
    def columns(self) -> list[str]:
        return self.schema.names

    @functools.cached_property
    def blank_row(self) -> Row:
        """A row with only the job's constants filled: each task's version and backbone."""
        row: Row = dict.fromkeys(self.columns)
        for task, ref in self.models.items():
            row[f"{task}_version"] = ref.version
            row[f"{task}_backbone"] = ref.backbone
        return row


def output_schema(tasks: Sequence[str], distribution: bool, faces: bool) -> pa.Schema:
    fields = [pa.field("path", pa.string(), nullable=False)]
    if faces:
        fields.append(pa.field("face_index", pa.int32()))
        fields += [pa.field(name, pa.int32()) for name in FACE_FIELDS]
        fields.append(pa.field("face_score", pa.float64()))
    for task in tasks:
        fields += [pa.field(f"{task}_{name}", pa.float64()) for name in SUMMARY_FIELDS]
        if distribution:
            fields.append(pa.field(f"{task}_probabilities", pa.list_(pa.float64())))
        fields += [
            pa.field(f"{task}_version", pa.string()),
            pa.field(f"{task}_backbone", pa.string()),
        ]
    fields += [pa.field("error", pa.string()), pa.field("error_message", pa.string())]
    return pa.schema(fields)


def _blank(layout: Layout, path: str) -> Row:
    return {**layout.blank_row, "path": path}


def _fill(row: Row, predictions: dict[str, TaskPrediction], distribution: bool) -> Row:
    for task, answer in predictions.items():
        row[f"{task}_expected"] = answer.expected
        row[f"{task}_mode"] = answer.mode
        row[f"{task}_median"] = answer.median
        row[f"{task}_low"] = answer.interval.low
        row[f"{task}_high"] = answer.interval.high
        if distribution:
            row[f"{task}_probabilities"] = answer.probabilities.tolist()
    return row


def error_row(layout: Layout, path: str, code: str, message: str) -> Row:
    row = _blank(layout, path)
    row["error"], row["error_message"] = code, " ".join(message.split())  # one line
    return row


def image_rows(layout: Layout, path: str, result: ImageResult) -> list[Row]:
    """The rows of one answered image. With faces, one per face; an image without a face
    still gets one row (``face_index`` empty) so that ``--resume`` knows it was done."""
    if not layout.faces:
        return [_fill(_blank(layout, path), result.predictions, layout.distribution)]
    faces = result.faces
    if not faces:
        return [_blank(layout, path)]
    rows = []
    for index, face in enumerate(faces):
        row = _blank(layout, path)
        row["face_index"] = index
        box = face.box
        row["box_x"], row["box_y"] = box.x, box.y
        row["box_width"], row["box_height"] = box.width, box.height
        row["face_score"] = face.score
        rows.append(_fill(row, face.predictions, layout.distribution))
    return rows


def to_table(layout: Layout, rows: list[Row]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=layout.schema)
