"""One Open Inference Protocol call on the engine, and what the protocol says about the
server and each model. Shared by the REST routes and the gRPC service: both parse their
wire format into an :class:`InferCall` and encode the :class:`InferAnswer`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service import __version__
from service.api.oip.tensors import (
    BYTES,
    IMAGE_INPUT,
    OUTPUTS,
    InputTensor,
    OutputTensor,
    flag,
    images_of,
    output_names,
    outputs_of,
)
from service.engine.engine import InferenceEngine
from service.errors import UnknownTask

SERVER_NAME = "ordinal-service"
PLATFORM = "ordinalclip"
# The protocol's extension for tensors sent as raw bytes after the JSON header (REST).
EXTENSIONS = ["binary_tensor_data"]


@dataclass(frozen=True)
class InferCall:
    task: str
    version: str | None  # None: the served version
    request_id: str
    inputs: list[InputTensor]
    requested: list[str] | None  # output names asked, None = the default set
    parameters: dict[str, Any]


@dataclass(frozen=True)
class InferAnswer:
    task: str
    version: str
    request_id: str
    outputs: list[OutputTensor]


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}


def served_version(engine: InferenceEngine, task: str, version: str | None) -> str:
    """The task's served registry version; asking for any other one is a 404."""
    served = engine.describe(task)[0].version
    if version not in (None, "", served):
        raise UnknownTask(f"version {version!r} of {task!r} is not served; served: {served!r}")
    return served


def model_metadata(engine: InferenceEngine, task: str, version: str | None) -> dict[str, Any]:
    """The protocol's model metadata: versions, the image input and every output, shapes
    with -1 where the request decides (rows) and the rank count where the task does."""
    served = served_version(engine, task, version)
    ranks = engine.describe(task)[0].num_ranks
    outputs = []
    for name, (datatype, shape) in OUTPUTS.items():
        fixed = [ranks, *shape[2:]] if name == "probabilities" else shape[1:]
        outputs.append({"name": name, "datatype": datatype, "shape": [shape[0], *fixed]})
    return {
        "name": task,
        "versions": [served],
        "platform": PLATFORM,
        "inputs": [{"name": IMAGE_INPUT, "datatype": BYTES, "shape": [-1]}],
        "outputs": outputs,
    }


async def run_infer(engine: InferenceEngine, call: InferCall, timeout_s: float) -> InferAnswer:
    """The one engine call (admission, deadline and errors are the engine's, as for v1)."""
    version = served_version(engine, call.task, call.version)
    faces = flag(call.parameters, "faces", False)
    names = output_names(call.requested, faces, flag(call.parameters, "distribution", True))
    images = images_of(call.inputs)
    results = (await engine.predict(images, [call.task], timeout_s, faces)).images
    ranks = engine.describe(call.task)[0].num_ranks
    outputs = outputs_of(results, call.task, ranks, faces, names)
    return InferAnswer(call.task, version, call.request_id, outputs)
