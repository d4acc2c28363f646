"""The protocol's REST wire format: a JSON inference request, optionally followed by raw
tensor bytes (the binary-data extension: ``Inference-Header-Content-Length`` is the JSON
part's length, each binary input says its ``binary_data_size``), and the answer in kind."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from service.api.oip.infer import InferAnswer, InferCall
from service.api.oip.tensors import BYTES, InputTensor, element_count, flag, split_bytes
from service.errors import InvalidInferenceRequest

HEADER_LENGTH = "Inference-Header-Content-Length"


class RequestInput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferenceRequest(BaseModel):
    id: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


@dataclass(frozen=True)
class BinaryPlan:
    """Which outputs go as raw bytes: per output ``binary_data``, else the request's
    ``binary_data_output`` (Triton's clients ask for binary when they name no output)."""

    default: bool = False
    per_output: dict[str, bool] = field(default_factory=dict)

    def binary(self, name: str) -> bool:
        return self.per_output.get(name, self.default)


def parse_infer(
    body: bytes, header_length: str | None, task: str, version: str | None, max_images: int
) -> tuple[InferCall, BinaryPlan]:
    header, binary = _split_body(body, header_length)
    try:
        request = InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInferenceRequest(f"not an inference request: {problems}") from None
    inputs, offset = [], 0
    for tensor in request.inputs:
        size = tensor.parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidInferenceRequest(
                    f"input '{tensor.name}': binary_data_size must be a byte count, got {size!r}"
                )
            chunk, offset = binary[offset : offset + size], offset + size
            if len(chunk) != size:
                raise InvalidInferenceRequest(
                    f"input '{tensor.name}' claims {size} binary bytes; the body holds "
                    f"{len(binary)} after its {len(header)}-byte header in all"
                )
        inputs.append(_input(tensor, chunk if size is not None else None, max_images))
    if offset != len(binary):
        raise InvalidInferenceRequest(
            f"the body has {len(binary)} bytes after the JSON header; the inputs' "
            f"binary_data_size add up to {offset}"
        )
    per_output = {
        o.name: flag(o.parameters, "binary_data", False)
        for o in request.outputs or []
        if "binary_data" in o.parameters
    }
    default = flag(request.parameters, "binary_data_output", False)
    requested = None if request.outputs is None else [o.name for o in request.outputs]
    call = InferCall(task, version, request.id, inputs, requested, request.parameters)
    return call, BinaryPlan(default, per_output)


def infer_response(answer: InferAnswer, plan: BinaryPlan) -> Response:
    outputs, blobs = [], []
    for tensor in answer.outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if plan.binary(tensor.name):
            raw = tensor.raw()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = tensor.array.ravel().tolist()
        outputs.append(entry)
    header = {
        "model_name": answer.task,
        "model_version": answer.version,
        "outputs": outputs,
        **({"id": answer.request_id} if answer.request_id else {}),
    }
    if not blobs:
        return JSONResponse(header)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return Response(
        b"".join([encoded, *blobs]),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(encoded))},
    )


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit() or not 0 < int(header_length) <= len(body):
        raise InvalidInferenceRequest(
            f"{HEADER_LENGTH} must be the JSON header's length, 1 to {len(body)} (the body's "
            f"size), got {header_length!r}"
        )
    length = int(header_length)
    return body[:length], body[length:]


def _input(tensor: RequestInput, binary: bytes | None, max_images: int) -> InputTensor:
    """A received input; a BYTES tensor's elements from its binary chunk, or from its JSON
    ``data``, where (images not being UTF-8 text) each element is a base64 string."""
    if tensor.datatype != BYTES:
        return InputTensor(tensor.name, tensor.datatype, tensor.shape, None)
    count = element_count(tensor.shape, max_images)
    if binary is not None:
        elements = split_bytes(binary, count, tensor.name)
    elif tensor.data is None:
        raise InvalidInferenceRequest(f"input '{tensor.name}' has neither data nor binary data")
    else:
        elements = [_base64(item, tensor.name, i) for i, item in enumerate(_flat(tensor.data))]
    return InputTensor(tensor.name, tensor.datatype, tensor.shape, elements)


def _flat(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [item for part in data for item in _flat(part)]
    return [data]


def _base64(item: Any, name: str, index: int) -> bytes:
    if not isinstance(item, str):
        raise InvalidInferenceRequest(
            f"input '{name}' element {index}: a BYTES element in JSON is a base64 string"
        )
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInferenceRequest(
            f"input '{name}' element {index} is not base64 (send raw bytes with the binary "
            "data extension instead)"
        ) from None
