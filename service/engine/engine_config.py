"""The engine's own settings: everything it needs to build and run, nothing of HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from service.imaging import ACCEPTED_FORMATS, ImageLimits
from service.imaging.faces import FaceConfig


@dataclass(frozen=True)
class EngineConfig:
    device: str = "auto"
    precision: str = "auto"
    # runtime: torch | onnxruntime | openvino | openvino-int8 | auto (fastest that passes parity).
    # The server's default is auto (service/settings.py); built directly, an engine is eager torch.
    runtime: str = "torch"
    allow_int8: bool = False  # may auto choose openvino-int8
    int8_calibration_dir: Path | None = None  # images for INT8 quantisation; None = probe set
    # core: the micro-batcher and the tower
    max_batch_size: int = 0  # 0 = measured at start-up, with the workers and threads
    max_batch_delay_ms: float = 2.0
    # timed passes over the batch sizes at start-up; more give a surer choice on a noisy
    # machine at the cost of start-up time (a batch job can afford it, a pod restart less)
    calibration_rounds: int = 2
    encoder_workers: int = 0  # 0 = measured at start-up (1 on CUDA and for own-pool runtimes)
    cpu_cores: int = 0  # cores the encoder workers share; 0 = all this process may use
    gil_switch_interval_ms: float | None = None
    # admission: by expected wait, with a hard cap on the image count
    target_wait_s: float = 2.0
    max_queued_images: int = 256
    # pre: decoding and checks
    preprocess_workers: int = 2
    limits: ImageLimits = field(default_factory=lambda: ImageLimits(max_pixels=50_000_000))
    # faces (``faces=true``): detector and crop settings; a task's manifest crop wins
    faces: FaceConfig = field(default_factory=FaceConfig)
    # post: summaries
    interval_level: float = 0.9

    @staticmethod
    def offline(precision: str = "fp32", max_pixels: int = 10**9) -> EngineConfig:
        """For batch jobs and evaluation: CPU, eager torch (the reference the other runtimes
        are gated against), generous limits, every accepted format."""
        return EngineConfig(
            device="cpu",
            precision=precision,
            runtime="torch",
            max_batch_size=32,
            calibration_rounds=6,
            target_wait_s=float("inf"),
            max_queued_images=1 << 30,
            limits=ImageLimits(max_pixels=max_pixels, formats=ACCEPTED_FORMATS),
        )
