"""The one settings object: environment variables (prefix ``OCLIP_``) and CLI flags.

Nothing else in the package reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.engine.engine_config import EngineConfig
from service.imaging import ImageLimits
from service.imaging.faces import FaceConfig

Precision = Literal["auto", "fp32", "bf16", "fp16"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCLIP_", extra="ignore")

    model_store: Path = Field(Path("model_store"), description="Registry folder to serve.")
    strict_registry: bool = Field(
        False,
        description="All or nothing: any task whose active version cannot be loaded stops "
        "the whole load. Off: such a task fails alone (503 for it, named on /readyz and "
        "in oclip_task_load_failed) and the others serve.",
    )
    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port.")
    grpc_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="TCP port of the Open Inference Protocol's gRPC service "
        "(inference.GRPCInferenceService, needs the `grpc` extra); 0 = off.",
    )
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    precision: Precision = Field(
        "auto",
        description="'auto' = fp16 on CUDA; on a CPU every precision it computes natively "
        "(bf16, fp16 where present, fp32) is measured and the fastest that passes parity served.",
    )
    runtime: Literal["auto", "torch", "onnxruntime", "openvino", "openvino-int8"] = Field(
        "auto",
        description="Vision-tower runtime on the CPU: 'auto' = measure torch and every "
        "installed runtime that passes the parity gate at start-up, serve the fastest (torch "
        "when no other is installed); or 'torch' (eager PyTorch), 'onnxruntime', 'openvino', "
        "'openvino-int8' (NNCF post-training INT8). Exports and measurements are cached "
        "beside the backbone; a runtime that fails parity is not served.",
    )
    allow_int8: bool = Field(
        False, description="Let 'auto' consider openvino-int8 (it still has to pass parity)."
    )
    int8_calibration_dir: Path | None = Field(
        None,
        description="Folder of images (JPEG/PNG/WebP) for INT8 quantisation; default: the "
        "16 fixed probe images of the parity gate.",
    )
    max_upload_bytes: int = Field(
        50 * 1024 * 1024, gt=0, description="Largest request body accepted."
    )
    max_images_per_request: int = Field(32, gt=0, description="Most image parts per request.")
    max_image_pixels: int = Field(
        50_000_000, gt=0, description="Largest width*height, checked from the header."
    )
    max_batch_size: int = Field(
        0, ge=0, description="Most images in one forward pass; 0 = measured at start-up."
    )
    max_batch_delay_ms: float = Field(
        2.0, ge=0, description="Longest wait for more images after the first one of a batch."
    )
    max_queued_images: int = Field(
        256,
        gt=0,
        description="Hard cap on images admitted to the encoder (decoding or queued); past it "
        "requests get 429.",
    )
    target_wait_s: float = Field(
        2.0,
        gt=0,
        description="Admission target: a request whose images would wait longer than this "
        "for the encoder, at the measured throughput (oclip_encoder_throughput_images_per_"
        "second), is refused at once with 429 and Retry-After.",
    )
    preprocess_workers: int = Field(2, gt=0, description="Threads that decode and resize images.")
    torch_threads: int = Field(0, ge=0, description="Intra-op threads; 0 = number of cores.")
    gil_switch_interval_ms: float = Field(
        0.5,
        gt=0,
        description="Python's GIL switch interval. Eager PyTorch needs the GIL "
        "between ops; at Python's default 5 ms the event loop stalls forwards (measured: "
        "-30 % throughput under load on 2 cores).",
    )
    encoder_workers: int = Field(
        0,
        ge=0,
        description="Forward-pass workers per backbone; 0 = measured at start-up on a CPU "
        "(every even split of the cores is timed), 1 on CUDA. Under load they split the cores; "
        "one alone uses them all, never more threads than cores.",
    )
    interval_level: float = Field(
        0.9, gt=0, lt=1, description="Probability mass of the reported central interval."
    )
    max_aspect_ratio: float = Field(
        20.0,
        ge=1,
        description="Longest side / shortest side; resizing the shortest side of "
        "a thinner image to the model's size would take unbounded memory.",
    )
    max_image_bytes: int = Field(25 * 1024 * 1024, gt=0, description="Largest single image part.")
    accepted_formats: str = Field(
        "JPEG,PNG,WEBP,GIF,BMP,TIFF", description="Comma-separated Pillow formats accepted."
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="Deadline for one predict request; past it the answer is 504."
    )
    max_concurrent_uploads: int = Field(
        32,
        gt=0,
        description="Request bodies received at once; past it, 429 before the body is read "
        "(bounds the memory uploads can hold: this x OCLIP_MAX_UPLOAD_BYTES).",
    )
    upload_timeout_s: float = Field(
        30.0, gt=0, description="Longest time to receive a request's body; past it, 408."
    )
    shutdown_grace_s: float = Field(
        30.0, gt=0, description="On SIGTERM, longest wait for accepted requests to finish."
    )
    shutdown_delay_s: float = Field(
        0.0,
        ge=0,
        description="On SIGTERM, keep answering 503 on /readyz this long before "
        "exiting (time for a load balancer to notice).",
    )
    face_detector: Literal["auto", "mtcnn", "haar", "yunet"] = Field(
        "auto",
        description="Face detector for per-face predictions: 'auto' (MTCNN when its "
        "weights are installed, else Haar), 'mtcnn', 'haar' (OpenCV's bundled cascade) or "
        "'yunet' (needs face_yunet_model). See docs/faces.md.",
    )
    face_yunet_model: Path | None = Field(
        None, description="YuNet ONNX file the operator provides; nothing is downloaded."
    )
    max_faces_per_image: int = Field(
        10, gt=0, description="Most faces predicted per image; the largest are kept."
    )
    min_face_px: int = Field(
        40,
        gt=0,
        description="Smallest face, in upright-image pixels, that is reported: a box's longer "
        "side (MTCNN frames brows to chin, so its boxes may be down to 0.8 of this).",
    )
    face_margin: float = Field(
        0.5, ge=0, description="Face crop side = (1 + margin) x the box's longest side."
    )
    face_max_scan_pixels: int = Field(
        2_000_000,
        ge=65_536,
        description="Most pixels of the largest copies a face detector scans per image, all "
        "its passes together (a pyramid's smaller levels add about as much again); "
        "detection runs where min_face_px spans the detector's window, and a photo too "
        "large for this cap is scanned smaller (its smallest face found grows).",
    )
    face_turn_degrees: float = Field(
        25.0,
        ge=0,
        le=40,
        description="MTCNN also scans copies of the photo turned by -/+ this many degrees, "
        "so heads tilted further than its own ~20 degrees are found; they share half of "
        "face_max_scan_pixels. 0: upright only (a fifth of the cost on small photos); "
        "above 40 some tilts between would fall between the passes.",
    )
    api_keys: str = Field("", description="Comma-separated API keys; empty = no auth.")
    api_keys_file: Path | None = Field(None, description="File with one API key per line.")
    admin_api_keys: str = Field(
        "",
        description="Comma-separated keys for /admin/*; empty = the admin routes are off "
        "(SIGHUP still reloads).",
    )
    web_page: bool = Field(True, description="Serve the try-it page at /")
    log_level: str = Field("info", description="Python logging level.")
    log_format: Literal["json", "text"] = Field("json", description="Log line format.")

    def load_api_keys(self) -> list[str]:
        """Keys from the setting and the file; in the file, blank lines and lines whose
        first non-blank character is ``#`` are skipped (an indented comment is no key)."""
        keys = [k.strip() for k in self.api_keys.split(",") if k.strip()]
        if self.api_keys_file is not None:
            lines = (line.strip() for line in self.api_keys_file.read_text().splitlines())
            keys += [line for line in lines if line and not line.startswith("#")]
        return keys

    def admin_keys(self) -> list[str]:
        return [k.strip() for k in self.admin_api_keys.split(",") if k.strip()]

    def engine_config(self) -> EngineConfig:
        """The engine's own settings, taken from these."""
        return EngineConfig(
            device=self.device,
            precision=self.precision,
            runtime=self.runtime,
            allow_int8=self.allow_int8,
            int8_calibration_dir=self.int8_calibration_dir,
            max_batch_size=self.max_batch_size,
            max_batch_delay_ms=self.max_batch_delay_ms,
            encoder_workers=self.encoder_workers,
            cpu_cores=self.torch_threads,
            gil_switch_interval_ms=self.gil_switch_interval_ms,
            target_wait_s=self.target_wait_s,
            max_queued_images=self.max_queued_images,
            preprocess_workers=self.preprocess_workers,
            limits=ImageLimits(
                max_pixels=self.max_image_pixels,
                max_bytes=self.max_image_bytes,
                max_aspect_ratio=self.max_aspect_ratio,
                formats=self.format_set(),
            ),
            faces=FaceConfig(
                detector=self.face_detector,
                yunet_model=self.face_yunet_model,
                max_faces=self.max_faces_per_image,
                min_size=self.min_face_px,
                margin=self.face_margin,
                max_scan_pixels=self.face_max_scan_pixels,
                turn_degrees=self.face_turn_degrees,
            ),
            interval_level=self.interval_level,
        )

    def format_set(self) -> frozenset[str]:
        names = {f.strip().upper() for f in self.accepted_formats.split(",") if f.strip()}
        return frozenset(names | ({"MPO"} if "JPEG" in names else set()))
