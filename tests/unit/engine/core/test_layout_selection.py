"""The serving layout is measured, not assumed: every even split of the cores is timed,
the fastest is served and cached beside the backbone, and ``OCLIP_RUNTIME`` unset means
``auto`` (the fastest runtime that passes parity, torch when none other can serve).

Timings come from encoders that sleep (sleeps overlap on any machine, so no assertion
depends on this machine's speed) or from the real tiny tower, where only properties of
the choice are asserted (which candidates were timed, that the served one is the fastest
of them), never a rate."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

from service.engine.core.device import Placement
from service.engine.core.runtimes.base import MeasuredEncoder, RuntimeInfo
from service.engine.core.runtimes.catalog import RUNTIMES, RuntimeSpec
from service.engine.core.runtimes.layout import TIE, EncoderLayout, cache_key, worker_shapes
from service.engine.core.runtimes.select import Search, select_encoder
from service.engine.core.runtimes.torch_runtime import VisionTower
from service.engine.factory import build_engine
from service.registry import LoadedBackbone, ModelStore
from service.settings import Settings
from service.trainer.architectures import TINY, build_clip
from tests.unit.engine.core.stores import loaded

CPU = Placement(torch.device("cpu"), "fp32")


class CoresEncoder(MeasuredEncoder):
    """Sleeps as a forward on shared cores would take: one worker with every thread is
    fastest (``per_image_s`` / threads), and two workers at once gain nothing."""

    backbone_id = "sleeper"
    image_size = 2
    placement = CPU
    runtime_info = RuntimeInfo("torch", "fp32")

    def __init__(self, per_image_s: float = 0.004) -> None:
        self.per_image_s = per_image_s
        self.lock = threading.Lock()
        self.running = 0
        self.calls: list[tuple[int, int | None]] = []

    def encode(self, pixels: torch.Tensor, intra_op_threads: int | None = None) -> torch.Tensor:
        with self.lock:
            self.running += 1
            self.calls.append((len(pixels), intra_op_threads))
            sharing = self.running
        # one worker alone uses its threads fully; workers beside each other halve
        time.sleep(self.per_image_s * len(pixels) * sharing / (intra_op_threads or 1))
        with self.lock:
            self.running -= 1
        return torch.ones(len(pixels), 4)


def test_every_even_split_of_the_cores_is_a_candidate() -> None:
    assert worker_shapes(1) == [(1, 1)]
    assert worker_shapes(2) == [(1, 2), (2, 1)]
    assert worker_shapes(4) == [(1, 4), (2, 2), (4, 1)]
    assert worker_shapes(8) == [(1, 8), (2, 4), (4, 2)]  # no slivers past 4 workers
    assert worker_shapes(4, workers=2) == [(2, 2)]  # the operator's choice is kept
    assert worker_shapes(4, own_pool=True) == [(1, None)]  # one pool, one worker


def test_the_fastest_layout_is_chosen_over_every_shape_and_size() -> None:
    encoder = CoresEncoder()
    choice = encoder.calibrate_layout(worker_shapes(2), limit=4)
    timed = {(size, threads) for size, threads in encoder.calls}
    assert {(1, 2), (2, 2), (4, 2), (1, 1), (2, 1), (4, 1)} <= timed
    assert set(choice.figures) == {
        str(EncoderLayout(w, t, b)) for w, t in ((1, 2), (2, 1)) for b in (1, 2, 4)
    }
    assert choice.layout.workers == 1 and choice.layout.threads == 2  # two threads, alone
    near = [n for n, rate in choice.figures.items() if rate >= TIE * max(choice.figures.values())]
    assert str(choice.layout) in near  # a near-equal of the best: the smallest batch of those
    assert choice.layout.batch_size == min(int(name.split(" b")[1]) for name in near)


def test_a_batch_slower_than_the_admission_target_allows_is_no_candidate() -> None:
    encoder = CoresEncoder(per_image_s=0.02)
    choice = encoder.calibrate_layout([(1, 1)], limit=16, max_batch_s=0.05)
    assert max(size for size, _ in encoder.calls) == 4  # 4 x 20 ms > 50 ms: stop there
    assert all(not name.endswith(" b4") for name in choice.figures)


def test_the_cache_key_follows_the_cores_and_the_search() -> None:
    one = cache_key(candidates=["torch/fp32"], search={"cores": 1})
    assert one == cache_key(candidates=["torch/fp32"], search={"cores": 1})
    assert one != cache_key(candidates=["torch/fp32"], search={"cores": 2})
    assert one != cache_key(candidates=["torch/fp32", "openvino/fp32"], search={"cores": 1})


@pytest.fixture
def store(tmp_path: Path, tiny_store: Path) -> ModelStore:
    copy = tmp_path / "store"
    shutil.copytree(tiny_store, copy, ignore=shutil.ignore_patterns("exports"))
    return ModelStore(copy)


def test_a_second_start_reuses_the_measurement(store: ModelStore) -> None:
    backbone, tasks = loaded(store)
    first = select_encoder(backbone, CPU, "torch", tasks, Search(rounds=1)).runtime_info
    assert first.layout is not None and not first.layout.cached
    assert list(backbone.folder.glob("exports/selection-*/selection.json"))
    again = select_encoder(backbone, CPU, "torch", tasks, Search(rounds=1)).runtime_info
    assert again.layout is not None and again.layout.cached
    assert again.layout.layout == first.layout.layout
    assert again.layout.figures == pytest.approx(first.layout.figures, abs=0.01)
    other = select_encoder(backbone, CPU, "torch", tasks, Search(rounds=1, workers=1))
    assert other.runtime_info.layout is not None and not other.runtime_info.layout.cached


def wrong_runtime(backbone: LoadedBackbone, instant: bool = False) -> RuntimeSpec:
    """An installed 'runtime' whose model is another seed's tower: it must fail parity.
    ``instant``: it answers noise at once, so it screens fastest and is gated first."""
    other = build_clip(TINY, seed=1).model.visual.state_dict()

    def build(_context: object, precision: str) -> MeasuredEncoder:
        tower = VisionTower(dataclasses.replace(backbone, state_dict=other), CPU)
        tower.runtime_info = RuntimeInfo("wrong", precision)
        if instant:
            width = backbone.manifest.embed_dim
            tower.encode = lambda pixels, threads=None: torch.randn(len(pixels), width)  # type: ignore[method-assign]
        return tower

    return RuntimeSpec("wrong", (), "none", build)


def served_beside_a_wrong_runtime(store: ModelStore, instant: bool, **options: str) -> RuntimeInfo:
    """What ``auto`` serves when a runtime that answers wrongly is among the candidates."""
    backbone, tasks = loaded(store)
    specs = {"wrong": wrong_runtime(backbone, instant=instant)}
    encoder = select_encoder(backbone, CPU, "auto", tasks, Search(rounds=1), specs=specs, **options)
    return encoder.runtime_info


def test_auto_falls_back_to_torch_when_parity_fails(store: ModelStore) -> None:
    # fp32 only: two candidates, both gated, no screening
    info = served_beside_a_wrong_runtime(store, instant=False, precision="fp32")
    assert info.name == "torch"
    assert info.parity["wrong/fp32"]["passed"] is False
    assert "wrong/fp32" not in info.measured_img_s


def test_the_fastest_candidate_is_not_served_when_its_parity_fails(store: ModelStore) -> None:
    """Gating goes fastest first: a runtime that screens fastest but answers wrongly is
    gated, refused, and the next ones are gated in its place."""
    info = served_beside_a_wrong_runtime(store, instant=True)
    assert info.name == "torch"
    assert info.parity["wrong/fp32"]["passed"] is False
    assert "wrong/fp32" not in info.measured_img_s
    assert info.parity[info.label]["passed"] is True


def test_unset_runtime_means_auto_and_serves_the_fastest_that_passed(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OCLIP_RUNTIME", raising=False)
    config = dataclasses.replace(Settings(model_store=store.root).engine_config())
    assert config.runtime == "auto"
    engine = build_engine(store.load_active(), dataclasses.replace(config, calibration_rounds=1))
    try:
        (runtime,) = engine.backbones.values()
        info = runtime.tower.runtime_info
        installed = {name for name, spec in RUNTIMES.items() if spec.missing() is None}
        tried = {label.split("/")[0] for label in info.parity}
        assert tried == {"torch"} | (installed - {"openvino-int8"})
        assert info.label == max(info.measured_img_s, key=info.measured_img_s.__getitem__)
        assert info.layout is not None
        assert runtime.batcher.workers == info.layout.layout.workers
        assert runtime.batcher.max_batch_size == info.layout.layout.batch_size
    finally:
        engine.stop()
