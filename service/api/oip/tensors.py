"""Tensors of the Open Inference Protocol: the image input checked and decoded, the
prediction outputs built from the engine's answer. No wire format here (REST and gRPC
each turn theirs into :class:`InputTensor` and read :class:`OutputTensor`)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.engine import NamedImage
from service.engine.post import ImageResult, TaskPrediction
from service.errors import InvalidInferenceRequest, NoImage, TooManyImages

IMAGE_INPUT = "image"
BYTES = "BYTES"
# A BYTES element, serialised: its length as 4 little-endian bytes, then the bytes.
_LENGTH = struct.Struct("<I")

# name -> (datatype, shape with -1 for "variable"); the order answered when none is asked.
# Per image, or with ``faces`` per face (N = faces found in the request).
PREDICTION_OUTPUTS: dict[str, tuple[str, list[int]]] = {
    "expected": ("FP64", [-1]),
    "mode": ("FP64", [-1]),
    "median": ("FP64", [-1]),
    "interval": ("FP64", [-1, 2]),
    "probabilities": ("FP64", [-1, -1]),
}
# Only with the ``faces`` parameter: the image each face row belongs to, its box
# (x, y, width, height in upright pixels), the detector's score, and faces per image.
FACE_OUTPUTS: dict[str, tuple[str, list[int]]] = {
    "image_index": ("INT64", [-1]),
    "box": ("INT64", [-1, 4]),
    "face_score": ("FP64", [-1]),
    "faces_found": ("INT64", [-1]),
}
OUTPUTS = {**PREDICTION_OUTPUTS, **FACE_OUTPUTS}


@dataclass(frozen=True)
class InputTensor:
    """One input as received: ``elements`` are a BYTES tensor's items (None for any other
    datatype, which is refused by name)."""

    name: str
    datatype: str
    shape: list[int]
    elements: list[bytes] | None


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    array: np.ndarray

    @property
    def shape(self) -> list[int]:
        return list(self.array.shape)

    def raw(self) -> bytes:
        """The protocol's raw form: row-major, little-endian."""
        return self.array.astype(self.array.dtype.newbyteorder("<")).tobytes()


def element_count(shape: list[int], max_images: int) -> int:
    """The number of images a shape holds: 1-D, within 1..max_images (413 past it)."""
    if len(shape) != 1 or shape[0] < 0:
        raise InvalidInferenceRequest(
            f"input '{IMAGE_INPUT}' must have shape [N] (one encoded image per element), "
            f"got {shape}"
        )
    if shape[0] == 0:
        raise NoImage(f"input '{IMAGE_INPUT}' has no element")
    if shape[0] > max_images:
        raise TooManyImages(f"more than {max_images} images in one request ({shape[0]})")
    return shape[0]


def split_bytes(raw: bytes, count: int, name: str) -> list[bytes]:
    """The ``count`` elements of a serialised BYTES tensor; refuses any length that runs
    past the end, and bytes left over."""
    elements, offset = [], 0
    for index in range(count):
        if offset + _LENGTH.size > len(raw):
            raise InvalidInferenceRequest(
                f"input '{name}' holds {index} elements; its shape says {count}"
            )
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise InvalidInferenceRequest(
                f"input '{name}' element {index} claims {length} bytes; only "
                f"{len(raw) - offset} remain"
            )
        elements.append(raw[offset : offset + length])
        offset += length
    if offset != len(raw):
        raise InvalidInferenceRequest(
            f"input '{name}' has {len(raw) - offset} bytes after its {count} elements"
        )
    return elements


def images_of(inputs: list[InputTensor]) -> list[NamedImage]:
    """The request's images: exactly one input, ``image``, a BYTES tensor of encoded files."""
    names = [tensor.name for tensor in inputs]
    if names != [IMAGE_INPUT]:
        raise InvalidInferenceRequest(
            f"expected exactly one input named '{IMAGE_INPUT}', got {names or 'none'}"
        )
    (tensor,) = inputs
    if tensor.datatype != BYTES or tensor.elements is None:
        raise InvalidInferenceRequest(
            f"input '{IMAGE_INPUT}' must be {BYTES} (encoded image files), got "
            f"{tensor.datatype!r}; preprocessed pixel tensors are not accepted"
        )
    if len(tensor.elements) != tensor.shape[0]:
        raise InvalidInferenceRequest(
            f"input '{IMAGE_INPUT}' has {len(tensor.elements)} elements; its shape says "
            f"{tensor.shape}"
        )
    return [NamedImage(f"{IMAGE_INPUT}[{i}]", data) for i, data in enumerate(tensor.elements)]


def flag(parameters: dict[str, Any], name: str, default: bool) -> bool:
    """A boolean request parameter (``faces``, ``distribution``): a bool, or 'true'/'false'."""
    value = parameters.get(name, default)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise InvalidInferenceRequest(f"parameter '{name}' must be a boolean, got {value!r}")
    return value


def output_names(requested: list[str] | None, faces: bool, distribution: bool) -> list[str]:
    """The outputs to answer: those asked (each known; face outputs only with ``faces``),
    else every prediction output (probabilities only with ``distribution``) and, with
    ``faces``, the face outputs."""
    offered = {**PREDICTION_OUTPUTS, **(FACE_OUTPUTS if faces else {})}
    if requested is not None:
        unknown = [name for name in requested if name not in offered]
        if unknown:
            raise InvalidInferenceRequest(
                f"unknown output(s) {unknown}; this request offers {list(offered)}"
                + ("" if faces else f" ({list(FACE_OUTPUTS)} need the 'faces' parameter)")
            )
        return list(dict.fromkeys(requested))
    return [name for name in offered if distribution or name != "probabilities"]


def outputs_of(
    results: list[ImageResult], task: str, ranks: int, faces: bool, names: list[str]
) -> list[OutputTensor]:
    """The named outputs of ``task``: one row per image, or with ``faces`` per face."""
    rows: list[TaskPrediction]
    if faces:
        found = [(index, face) for index, r in enumerate(results) for face in r.faces or []]
        rows = [face.predictions[task] for _, face in found]
        columns: dict[str, np.ndarray] = {
            "image_index": np.array([index for index, _ in found], dtype=np.int64),
            "box": np.array(
                [[f.box.x, f.box.y, f.box.width, f.box.height] for _, f in found], dtype=np.int64
            ).reshape(-1, 4),
            "face_score": np.array([face.score for _, face in found], dtype=np.float64),
            "faces_found": np.array([r.faces_found for r in results], dtype=np.int64),
        }
    else:
        rows, columns = [r.predictions[task] for r in results], {}
    columns |= {
        "expected": np.array([p.expected for p in rows], dtype=np.float64),
        "mode": np.array([p.mode for p in rows], dtype=np.float64),
        "median": np.array([p.median for p in rows], dtype=np.float64),
        "interval": np.array(
            [[p.interval.low, p.interval.high] for p in rows], dtype=np.float64
        ).reshape(-1, 2),
        "probabilities": np.array([p.probabilities for p in rows], dtype=np.float64).reshape(
            -1, ranks
        ),
    }
    return [OutputTensor(name, OUTPUTS[name][0], columns[name]) for name in names]
