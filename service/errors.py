"""Domain errors and the one table that maps them to HTTP.

Every layer raises a :class:`ServiceError` subclass; the API turns it into
``{"error": {"code", "message"}}`` with the status listed here.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error a client may see. ``code`` is stable; ``message`` is for people."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class UnknownTask(ServiceError):
    code, status = "unknown_task", 404


class NoImage(ServiceError):
    code, status = "no_image", 422


class InvalidImage(ServiceError):
    code, status = "invalid_image", 422


class UnsupportedMediaType(ServiceError):
    code, status = "unsupported_media_type", 415


class PayloadTooLarge(ServiceError):
    code, status = "payload_too_large", 413


class TooManyImages(ServiceError):
    code, status = "too_many_images", 413


class ImageTooLarge(ServiceError):
    code, status = "image_too_large", 413


class InvalidRequest(ServiceError):
    code, status = "invalid_request", 422


class MalformedRequest(ServiceError):
    code, status = "malformed_request", 400


class Overloaded(ServiceError):
    code, status = "overloaded", 429


class NotReady(ServiceError):
    code, status = "not_ready", 503


class ShuttingDown(ServiceError):
    code, status = "shutting_down", 503


class DeadlineExceeded(ServiceError):
    code, status = "deadline_exceeded", 504


class Unauthorized(ServiceError):
    code, status = "unauthorized", 401


class ReloadFailed(ServiceError):
    code, status = "reload_failed", 409


class ArtifactError(ServiceError):
    """A registry artifact is missing, tampered with or inconsistent."""

    code, status = "artifact_error", 500


ERROR_TABLE: list[type[ServiceError]] = [
    UnknownTask,
    NoImage,
    InvalidImage,
    UnsupportedMediaType,
    PayloadTooLarge,
    TooManyImages,
    ImageTooLarge,
    InvalidRequest,
    MalformedRequest,
    Overloaded,
    NotReady,
    ShuttingDown,
    DeadlineExceeded,
    Unauthorized,
    ReloadFailed,
    ArtifactError,
]
