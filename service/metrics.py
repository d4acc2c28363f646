"""Every Prometheus metric of the service, with its buckets, in one place.

One process per container (scale out with replicas), so the default registry is used.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Summary

PREFIX = "oclip"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
FACE_BUCKETS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 32)
POSITION_BUCKETS = tuple(round(i / 10, 1) for i in range(1, 11))

REQUESTS = Counter(
    f"{PREFIX}_requests_total", "HTTP requests answered.", ["route", "task", "method", "status"]
)
REQUEST_SECONDS = Histogram(
    f"{PREFIX}_request_duration_seconds",
    "Time from request start to response.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(f"{PREFIX}_requests_in_flight", "Requests being handled now.")
ERRORS = Counter(f"{PREFIX}_errors_total", "Error responses by stable error code.", ["code"])

PREPROCESS_SECONDS = Histogram(
    f"{PREFIX}_preprocess_duration_seconds",
    "Decode + resize + normalise time per image.",
    ["backbone"],
    buckets=STAGE_BUCKETS,
)
QUEUE_WAIT_SECONDS = Histogram(
    f"{PREFIX}_queue_wait_seconds",
    "Time an image waited for its forward pass.",
    ["backbone"],
    buckets=STAGE_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    f"{PREFIX}_inference_duration_seconds",
    "Vision-tower forward time per batch.",
    ["backbone"],
    buckets=STAGE_BUCKETS,
)
BATCH_SIZE = Histogram(
    f"{PREFIX}_batch_size", "Images per forward pass.", ["backbone"], buckets=BATCH_BUCKETS
)
MAX_BATCH_SIZE = Gauge(
    f"{PREFIX}_max_batch_size", "Batch-size limit in force (set or calibrated).", ["backbone"]
)
MAX_QUEUED_IMAGES = Gauge(
    f"{PREFIX}_max_queued_images", "Queue bound: past it requests get 429.", ["backbone"]
)
QUEUE_DEPTH = Gauge(
    f"{PREFIX}_queue_depth", "Images queued or running in the encoder.", ["backbone"]
)
FACE_DETECTION_SECONDS = Histogram(
    f"{PREFIX}_face_detection_seconds",
    "Face detection time per image (faces=true), decoding and cropping excluded.",
    buckets=STAGE_BUCKETS,
)
FACES_PER_IMAGE = Histogram(
    f"{PREFIX}_faces_per_image",
    "Faces detected per image (faces=true), before the per-image limit.",
    buckets=FACE_BUCKETS,
)
IMAGES_WITHOUT_FACE = Counter(
    f"{PREFIX}_images_without_face_total", "Images with faces=true in which no face was found."
)
IMAGES = Counter(f"{PREFIX}_images_total", "Images predicted.", ["task"])
PREDICTED_VALUE = Summary(
    f"{PREFIX}_predicted_value", "Expected value predicted (mean = sum / count).", ["task"]
)
PREDICTED_POSITION = Histogram(
    f"{PREFIX}_predicted_position",
    "Expected value as a fraction of the task's range (0 = lowest rank, 1 = highest).",
    ["task"],
    buckets=POSITION_BUCKETS,
)
MODEL_INFO = Gauge(
    f"{PREFIX}_model_info",
    "1 for each served task version, with the runtime, precision and layout measured "
    "fastest at start-up (layout: workers x intra-op threads, largest batch).",
    ["task", "version", "backbone", "device", "precision", "runtime", "layout"],
)
RUNTIME_MEASURED = Gauge(
    f"{PREFIX}_runtime_measured_images_per_second",
    "Start-up throughput of each runtime/precision that passed parity, in its best layout "
    "(finalists) or one screening round (the others); the fastest is served.",
    ["backbone", "runtime", "precision"],
)
MODEL_LOAD_SECONDS = Gauge(
    f"{PREFIX}_model_load_seconds", "Time to load, build and warm up the registry."
)
RELOADS = Counter(f"{PREFIX}_reloads_total", "Registry reloads by result.", ["result"])
READY = Gauge(f"{PREFIX}_ready", "1 when every task is loaded and warmed up.")
ADMISSION_WAIT_SECONDS = Gauge(
    f"{PREFIX}_admission_wait_seconds",
    "Expected wait before a newly queued image is encoded: queued images / measured "
    "throughput. Admission refuses (429) work past the target wait; autoscale on it.",
    ["backbone"],
)
THROUGHPUT = Gauge(
    f"{PREFIX}_encoder_throughput_images_per_second",
    "Measured encoder throughput (moving estimate) used by admission.",
    ["backbone"],
)
TASK_CALIBRATED = Gauge(
    f"{PREFIX}_task_calibrated",
    "1 when the served task version carries a calibration (temperature + interval mass).",
    ["task"],
)
TASK_LOAD_FAILED = Gauge(
    f"{PREFIX}_task_load_failed",
    "1 for each task whose active version could not be loaded (the others still serve).",
    ["task"],
)
