"""Domain errors and the one table that maps every error a client can see to HTTP.

Every layer raises a :class:`ServiceError` subclass. The API renders it as
``{"error": {"code", "message"}}`` with its ``status``; errors raised by the framework
itself (unknown path, wrong method, bad query) are mapped through :data:`FRAMEWORK_ERRORS`
to the same shape. :data:`ERROR_TABLE` lists both, and the routes' OpenAPI ``responses``
and the "Limits and errors" table of docs/api.md are generated from / checked against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class ServiceError(Exception):
    """Base of every error a client may see. ``code`` is stable; ``message`` is for people."""

    code = "internal_error"
    status = 500
    meaning = "An unexpected failure; the request was not processed (report it)."

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


def retry_after(seconds: float) -> dict[str, str]:
    """A ``Retry-After`` header of whole seconds, at least 1."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class MalformedRequest(ServiceError):
    code, status = "malformed_request", 400
    meaning = "The multipart body cannot be parsed."


class InvalidInferenceRequest(ServiceError):
    code, status = "invalid_inference_request", 400
    meaning = (
        "An Open Inference Protocol (`/v2`, gRPC) request with bad JSON, a binary layout that "
        "disagrees with its header, or a wrong tensor name, datatype, shape or parameter."
    )


class Unauthorized(ServiceError):
    code, status = "unauthorized", 401
    meaning = "No valid API key (`Authorization: Bearer` or `X-API-Key`)."


class UnknownTask(ServiceError):
    code, status = "unknown_task", 404
    meaning = "The task is not served; the message lists the served tasks."


class UploadTimeout(ServiceError):
    code, status = "upload_timeout", 408
    meaning = "The request body did not arrive within `OCLIP_UPLOAD_TIMEOUT_S`."


class ReloadFailed(ServiceError):
    code, status = "reload_failed", 409
    meaning = "A reload was rejected (or one is running); the previous models still serve."


class PayloadTooLarge(ServiceError):
    code, status = "payload_too_large", 413
    meaning = "The request body exceeds `OCLIP_MAX_UPLOAD_BYTES`."


class TooManyImages(ServiceError):
    code, status = "too_many_images", 413
    meaning = (
        "More image parts than `OCLIP_MAX_IMAGES_PER_REQUEST`, or more images than the "
        "encoder queue can ever hold (`OCLIP_MAX_QUEUED_IMAGES`)."
    )


class ImageTooLarge(ServiceError):
    code, status = "image_too_large", 413
    meaning = (
        "One image exceeds `OCLIP_MAX_IMAGE_BYTES` or `OCLIP_MAX_IMAGE_PIXELS`, or its "
        "decoding would cost more memory than an image at the pixel limit."
    )


class UnsupportedMediaType(ServiceError):
    code, status = "unsupported_media_type", 415
    meaning = "Not an image in an accepted format, or a body that is neither multipart nor image/*."


class NoImage(ServiceError):
    code, status = "no_image", 422
    meaning = "The request has no `image` file part."


class InvalidImage(ServiceError):
    code, status = "invalid_image", 422
    meaning = "Corrupt or truncated image data, or an aspect ratio past `OCLIP_MAX_ASPECT_RATIO`."


class InvalidRequest(ServiceError):
    code, status = "invalid_request", 422
    meaning = "A bad query parameter or form field (the message names it)."


class Overloaded(ServiceError):
    code, status = "overloaded", 429
    meaning = (
        "The images would wait longer than `OCLIP_TARGET_WAIT_S` for the encoder, or the "
        "queue holds `OCLIP_MAX_QUEUED_IMAGES`; `Retry-After` is the measured drain time."
    )


class ArtifactError(ServiceError):
    """A registry artifact is missing, tampered with or inconsistent. Clients never see it
    as such: a load turns it into ``not_ready``, a reload into ``reload_failed``."""

    code, status = "artifact_error", 500
    meaning = "A registry artifact is missing or fails its checksum (operator error)."


class NotReady(ServiceError):
    code, status = "not_ready", 503
    meaning = "Models are still loading, or failed to load (the message says why)."


class ShuttingDown(ServiceError):
    code, status = "shutting_down", 503
    meaning = "The server is draining after SIGTERM; retry on another replica (`Retry-After`)."

    def __init__(self, message: str = "the service is shutting down") -> None:
        # The request middleware adds ``Connection: close`` to a draining server's responses
        # once the request body has been received.
        super().__init__(message, headers=retry_after(1))


class DeadlineExceeded(ServiceError):
    code, status = "deadline_exceeded", 504
    meaning = "No answer within `OCLIP_REQUEST_TIMEOUT_S`."


@dataclass(frozen=True)
class FrameworkError:
    """An error the framework raises before our code runs, in the same JSON shape."""

    code: str
    status: int
    meaning: str


NOT_FOUND = FrameworkError("not_found", 404, "No such path (or `/admin` without an admin key).")
METHOD_NOT_ALLOWED = FrameworkError("method_not_allowed", 405, "The path exists; the method not.")
INTERNAL_ERROR = FrameworkError("internal_error", 500, ServiceError.meaning)

FRAMEWORK_ERRORS = {e.status: e for e in (NOT_FOUND, METHOD_NOT_ALLOWED, INTERNAL_ERROR)}
FRAMEWORK_ERRORS[400] = FrameworkError("malformed_request", 400, MalformedRequest.meaning)
FRAMEWORK_ERRORS[413] = FrameworkError("payload_too_large", 413, PayloadTooLarge.meaning)

ErrorKind = type[ServiceError] | FrameworkError

# Every code a client can receive, in status order: the single source of docs/api.md's
# table and of every route's documented responses.
ERROR_TABLE: list[ErrorKind] = [
    MalformedRequest,
    InvalidInferenceRequest,
    Unauthorized,
    UnknownTask,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    UploadTimeout,
    ReloadFailed,
    PayloadTooLarge,
    TooManyImages,
    ImageTooLarge,
    UnsupportedMediaType,
    NoImage,
    InvalidImage,
    InvalidRequest,
    Overloaded,
    INTERNAL_ERROR,
    NotReady,
    ShuttingDown,
    DeadlineExceeded,
]
