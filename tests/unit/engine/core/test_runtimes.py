"""Encoder runtimes on the tiny model: ONNX export round trip, the parity gate for every
installed runtime, the export cache (corruption detected and rebuilt), and ``auto``'s
choice and its fallback to torch when no optional runtime is installed."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from prometheus_client import generate_latest

from service.api.schemas import ModelInfo
from service.engine.core.device import Placement, resolve_placement
from service.engine.core.runtimes.catalog import RUNTIMES
from service.engine.core.runtimes.parity import PROBE_IMAGES, check_parity, probe_pixels
from service.engine.core.runtimes.select import select_encoder
from service.engine.core.runtimes.torch_runtime import VisionTower
from service.engine.engine_config import EngineConfig
from service.engine.factory import build_engine
from service.engine.lifecycle import _publish
from service.registry import ModelStore
from service.registry.exports import INDEX, ExportCache
from service.trainer.architectures import TINY, backbone_manifest, build_clip
from tests.unit.engine.core.stores import loaded

CPU = Placement(torch.device("cpu"), "fp32")
INSTALLED = [name for name, spec in RUNTIMES.items() if spec.missing() is None]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tiny_store: Path) -> ModelStore:
    """A copy of the tiny registry: these tests write exports beside its backbone, and
    share them (exporting is the slow part)."""
    copy = tmp_path_factory.mktemp("runtimes") / "store"
    shutil.copytree(tiny_store, copy)
    return ModelStore(copy)


def test_probe_set_is_fixed(store: ModelStore) -> None:
    backbone, _ = loaded(store)
    first = probe_pixels(backbone.manifest.preprocess)
    assert first.shape == (PROBE_IMAGES, 3, 32, 32)
    assert torch.equal(first, probe_pixels(backbone.manifest.preprocess))
    assert len({round(float(image.std()), 4) for image in first}) == PROBE_IMAGES  # all differ


@pytest.mark.slow
@pytest.mark.skipif("onnxruntime" not in INSTALLED, reason="the onnx extra is not installed")
def test_onnx_export_round_trips_with_a_dynamic_batch_axis(store: ModelStore) -> None:
    backbone, tasks = loaded(store)
    encoder = select_encoder(backbone, CPU, "onnxruntime", tasks)
    assert encoder.runtime_info.name == "onnxruntime"
    (onnx_file,) = (backbone.folder / "exports").glob("onnx-*/visual.onnx")
    graph = onnx.load(str(onnx_file)).graph
    onnx.checker.check_model(str(onnx_file))
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic, not fixed
    reference = VisionTower(backbone, CPU)
    for size in (1, 3, 5):
        pixels = probe_pixels(backbone.manifest.preprocess, size)
        cosine = torch.nn.functional.cosine_similarity(
            encoder.encode(pixels), reference.encode(pixels)
        )
        assert cosine.shape == (size,)
        assert float(cosine.min()) > 0.99999


@pytest.mark.parametrize("runtime", INSTALLED)
def test_every_installed_runtime_is_gated_against_torch_fp32(
    store: ModelStore, runtime: str
) -> None:
    backbone, tasks = loaded(store)
    encoder = select_encoder(
        backbone, Placement(torch.device("cpu"), "bf16"), runtime, tasks, allow_int8=True
    )
    reports = {k: r for k, r in encoder.runtime_info.parity.items() if k.startswith(runtime + "/")}
    assert reports  # every precision of this runtime native here was gated
    for report in reports.values():
        floor = 0.9999 if report["precision"] == "fp32" else 0.999
        assert report["passed"] == (
            report["min_cosine"] >= floor and report["max_value_shift"] <= 0.005
        )
    if any(report["passed"] for report in reports.values()):
        assert encoder.runtime_info.name == runtime
        assert reports[encoder.runtime_info.label]["passed"]
    else:  # not served: torch is
        assert encoder.runtime_info.name == "torch"
    if runtime in ("onnxruntime", "openvino"):
        assert reports[f"{runtime}/fp32"]["passed"], reports


def test_gate_refuses_a_different_model(
    store: ModelStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Another seed's tower stands in for a broken export: the gate says why it fails."""
    backbone, tasks = loaded(store)
    other = build_clip(TINY, seed=1)
    wrong = VisionTower(
        dataclasses.replace(backbone, state_dict=other.model.visual.state_dict()), CPU
    )
    probe = probe_pixels(backbone.manifest.preprocess)
    report = check_parity(
        "wrong", "fp32", VisionTower(backbone, CPU).encode(probe), wrong.encode(probe), tasks
    )
    assert not report.passed
    assert "min cosine" in report.reason


def test_a_corrupt_export_is_detected_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ExportCache(tmp_path, "ab" * 32)
    builds: list[Path] = []

    def build(folder: Path) -> None:
        builds.append(folder)
        (folder / "model.bin").write_bytes(b"weights" * 100)

    folder = cache.get_or_build("onnx", "torch9", build)
    assert cache.get_or_build("onnx", "torch9", build) == folder and len(builds) == 1
    (folder / "model.bin").write_bytes(b"weightz" * 100)  # flipped in place
    with caplog.at_level(logging.WARNING):
        assert cache.get_or_build("onnx", "torch9", build) == folder
    assert len(builds) == 2 and "corrupt" in caplog.text
    assert (folder / "model.bin").read_bytes() == b"weights" * 100
    assert cache.problem(folder) is None
    (folder / INDEX).write_text("{not json")
    assert cache.problem(folder) is not None
    assert ExportCache(tmp_path, "cd" * 32).folder("onnx", "torch9") != folder  # other weights


def test_auto_falls_back_to_torch_when_no_extra_is_installed(store: ModelStore) -> None:
    backbone, tasks = loaded(store)
    absent = {
        name: dataclasses.replace(spec, modules=("oclip_no_such_runtime_module",))
        for name, spec in RUNTIMES.items()
    }
    encoder = select_encoder(backbone, CPU, "auto", tasks, specs=absent)
    assert encoder.runtime_info.name == "torch"
    assert encoder.runtime_info.requested == "auto"
    with pytest.raises(ValueError, match="oclip_no_such_runtime_module"):
        select_encoder(backbone, CPU, "onnxruntime", tasks, specs=absent)


@pytest.mark.skipif(not INSTALLED, reason="no optional runtime installed")
def test_auto_serves_the_fastest_that_passed(store: ModelStore) -> None:
    backbone, tasks = loaded(store)
    encoder = select_encoder(backbone, CPU, "auto", tasks)
    info = encoder.runtime_info
    assert set(info.screened_img_s) == set(info.parity)  # every candidate built is screened
    assert set(info.measured_img_s) == {n for n, r in info.parity.items() if r["passed"]}
    ungated = [n for n, r in info.parity.items() if r["passed"] is None]
    slowest_timed = min(info.screened_img_s[n] for n in info.measured_img_s)
    assert all(info.screened_img_s[n] <= slowest_timed for n in ungated)  # gated fastest first
    assert info.label == max(info.measured_img_s, key=info.measured_img_s.__getitem__)
    assert info.layout is not None and info.layout.img_s == info.measured_img_s[info.label]
    assert not any(label.startswith("openvino-int8") for label in info.parity)  # opt-in


@pytest.mark.skipif("onnxruntime" not in INSTALLED, reason="the onnx extra is not installed")
def test_the_engine_reports_its_runtime_in_models_and_metrics(store: ModelStore) -> None:
    snapshot = store.load_active()
    config = EngineConfig(device="cpu", precision="fp32", runtime="onnxruntime", max_batch_size=2)
    engine = build_engine(snapshot, config)
    try:
        info = ModelInfo.of(*engine.describe("age"))
        assert info.backbone.runtime is not None
        assert info.backbone.runtime["name"] == "onnxruntime"
        assert info.backbone.runtime["parity"]["onnxruntime/fp32"]["passed"] is True
        assert info.backbone.runtime["layout"]["batch_size"] == 2  # the operator's size
        _publish(engine)
        text = generate_latest().decode()
        assert 'layout="1xpool b2",precision="fp32",runtime="onnxruntime"' in text
        served = [line for line in text.splitlines() if line.startswith("oclip_model_info{")]
        assert len(served) == len(engine.tasks)
        assert all('runtime="onnxruntime"' in line for line in served)
    finally:
        engine.stop()


@pytest.mark.slow
@pytest.mark.parametrize("runtime", [n for n in INSTALLED if n != "openvino-int8"])
def test_parity_on_vit_b16(tmp_path_factory: pytest.TempPathFactory, runtime: str) -> None:
    """The full ViT-B/16 tower (random weights) passes the gate on each float runtime, at
    the precision ``auto`` would serve here (bf16 where the CPU has it)."""
    root = tmp_path_factory.getbasetemp() / "vit-b16-store"
    if not root.exists():  # random prototypes: the text tower would add minutes, not coverage
        built = build_clip("ViT-B-16")
        store = ModelStore(root)
        manifest = backbone_manifest(built)
        store.write_backbone(manifest, built.model.visual.state_dict())
        prototypes = torch.randn(8, manifest.embed_dim, generator=torch.Generator().manual_seed(0))
        store.publish_task(
            prototypes, task="age", backbone=manifest.id, values=list(range(8)), logit_scale=100.0
        )
    backbone, tasks = loaded(ModelStore(root))
    placement = resolve_placement("cpu", "auto")
    encoder = select_encoder(backbone, placement, runtime, tasks, precision=placement.precision)
    # a runtime without that precision (onnxruntime has no bf16) serves its fp32
    served = (
        "fp32" if placement.precision not in RUNTIMES[runtime].precisions else placement.precision
    )
    assert encoder.runtime_info.label == f"{runtime}/{served}"
    report = encoder.runtime_info.parity[encoder.runtime_info.label]
    assert report["passed"], report
    assert encoder.runtime_info.name == runtime
