"""The protocol's gRPC messages: the service's generated classes (compiled from
``oclip_open_inference.proto`` when first imported, by grpcio-tools), a ModelInferRequest
turned into an :class:`InferCall`, and an :class:`InferAnswer` into a ModelInferResponse."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from service.api.oip.infer import InferAnswer, InferCall
from service.api.oip.tensors import BYTES, InputTensor, element_count, split_bytes
from service.errors import InvalidInferenceRequest

PROTO = Path(__file__).with_name("oclip_open_inference.proto")
SERVICE = "inference.GRPCInferenceService"


def _compile() -> tuple[ModuleType, ModuleType]:
    # protos_and_services finds the file on sys.path; only for the call, so that nothing
    # else in this folder becomes importable as a top-level module.
    sys.path.insert(0, str(PROTO.parent))
    try:
        return grpc.protos_and_services(PROTO.name)  # type: ignore[attr-defined,no-any-return]
    except TypeError as exc:  # protobuf's default pool already holds package "inference"
        raise RuntimeError(
            "the Open Inference Protocol's messages are already registered in this process "
            "(by tritonclient.grpc, for one): serve gRPC from a process of its own"
        ) from exc
    finally:
        sys.path.remove(str(PROTO.parent))


pb, services = _compile()


def parameters_of(message: Any) -> dict[str, Any]:
    """A ``map<string, InferParameter>`` as plain values."""
    values = {}
    for name, parameter in message.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is not None:
            values[name] = getattr(parameter, choice)
    return values


def infer_call(request: Any, max_images: int) -> InferCall:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInferenceRequest(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs"
        )
    inputs = []
    for index, tensor in enumerate(request.inputs):
        shape, elements = list(tensor.shape), None
        if tensor.datatype == BYTES:
            count = element_count(shape, max_images)
            if raw:
                elements = split_bytes(raw[index], count, tensor.name)
            else:
                elements = list(tensor.contents.bytes_contents)
        inputs.append(InputTensor(tensor.name, tensor.datatype, shape, elements))
    requested = [output.name for output in request.outputs] or None
    return InferCall(
        task=request.model_name,
        version=request.model_version or None,
        request_id=request.id,
        inputs=inputs,
        requested=requested,
        parameters=parameters_of(request.parameters),
    )


def infer_response(answer: InferAnswer) -> Any:
    Output = pb.ModelInferResponse.InferOutputTensor
    return pb.ModelInferResponse(
        model_name=answer.task,
        model_version=answer.version,
        id=answer.request_id,
        outputs=[Output(name=t.name, datatype=t.datatype, shape=t.shape) for t in answer.outputs],
        raw_output_contents=[tensor.raw() for tensor in answer.outputs],
    )


def model_metadata_response(metadata: dict[str, Any]) -> Any:
    Tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=metadata["name"],
        versions=metadata["versions"],
        platform=metadata["platform"],
        inputs=[Tensor(**tensor) for tensor in metadata["inputs"]],
        outputs=[Tensor(**tensor) for tensor in metadata["outputs"]],
    )
