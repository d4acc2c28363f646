"""Our subset of the protocol's gRPC service is wire-compatible with the real one: every
message and field we declare has the number, type and label of the descriptors that
tritonclient (Triton's full inference.GRPCInferenceService) ships, and every RPC we serve
exists there with the same request and response types."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

grpc_tools = pytest.importorskip("grpc_tools.protoc")
triton = pytest.importorskip("tritonclient.grpc.service_pb2")

PROTO = Path(__file__).parents[3] / "service/api/oip/oclip_open_inference.proto"

Fields = dict[str, tuple[int, int, int, str]]


def ours(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    """Compiled by protoc, never registered: the process already holds Triton's copy."""
    out = tmp_path / "set.pb"
    code = grpc_tools.main(
        ["protoc", f"-I{PROTO.parent}", f"--descriptor_set_out={out}", PROTO.name]
    )
    assert code == 0
    (file,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return file


def theirs() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto()
    triton.DESCRIPTOR.CopyToProto(file)
    return file


def messages(
    types: list[descriptor_pb2.DescriptorProto], prefix: str = ".inference"
) -> dict[str, Fields]:
    found = {}
    for message in types:
        name = f"{prefix}.{message.name}"
        found[name] = {f.name: (f.number, f.type, f.label, f.type_name) for f in message.field}
        found |= messages(list(message.nested_type), name)
    return found


def test_every_declared_field_matches_the_protocol(tmp_path: Path) -> None:
    mine, real = messages(list(ours(tmp_path).message_type)), messages(list(theirs().message_type))
    assert len(mine) > 15
    for name, fields in mine.items():
        if name.endswith("Entry"):  # map entries: key/value, compared through their map field
            continue
        assert name in real, name
        for field, spec in fields.items():
            assert real[name].get(field) == spec, (name, field)


def test_every_rpc_exists_with_the_same_types(tmp_path: Path) -> None:
    (service,) = ours(tmp_path).service
    (real,) = [s for s in theirs().service if s.name == service.name]
    assert service.name == "GRPCInferenceService" and ours(tmp_path).package == "inference"
    real_methods = {m.name: (m.input_type, m.output_type) for m in real.method}
    served = {m.name: (m.input_type, m.output_type) for m in service.method}
    assert set(served) == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    }
    for name, types in served.items():
        assert real_methods[name] == types, name
