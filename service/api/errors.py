"""Every error leaves the service as ``{"error": {"code", "message"}}``, never a traceback;
under ``/v2`` (the Open Inference Protocol) as the protocol's ``{"error": "<message>"}``,
with the same status and the stable code beside it.

Statuses and codes come from :data:`service.errors.ERROR_TABLE`, which also generates each
route's documented responses (:func:`documented`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import metrics
from service.errors import (
    ERROR_TABLE,
    FRAMEWORK_ERRORS,
    INTERNAL_ERROR,
    InvalidRequest,
    ServiceError,
)

log = logging.getLogger(__name__)


OIP_PREFIX = "/v2"


def speaks_oip(path: str) -> bool:
    """Whether ``path`` is one of the Open Inference Protocol's routes."""
    return path == OIP_PREFIX or path.startswith(f"{OIP_PREFIX}/")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, path: str = ""
) -> JSONResponse:
    metrics.ERRORS.labels(code).inc()
    body: dict[str, Any] = (
        {"error": message, "code": code}
        if speaks_oip(path)
        else {"error": {"code": code, "message": message}}
    )
    return JSONResponse(body, status_code=status, headers=headers)


def internal_error_response(path: str = "") -> JSONResponse:
    message = "internal error; the request was not processed"
    return error_response(500, INTERNAL_ERROR.code, message, path=path)


# Any route can answer these: 405 for another method on its path, 500 for a bug.
EVERY_ROUTE_STATUSES = (405, 500)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for ``statuses`` and :data:`EVERY_ROUTE_STATUSES`: the one error
    schema, and every code of the table that answers with that status. A generated client
    then parses every error it can receive into the same typed ``ErrorResponse``."""
    from service.api.schemas import ErrorResponse  # schemas import engine types; keep lazy

    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, *EVERY_ROUTE_STATUSES}):
        kinds = [kind for kind in ERROR_TABLE if kind.status == status]
        if not kinds:
            raise ValueError(f"status {status} is in no row of the error table")
        lines = "; ".join(f"`{kind.code}`: {kind.meaning}" for kind in kinds)
        responses[status] = {"model": ErrorResponse, "description": lines}
    return responses


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.status >= 500:  # a refusal while loading or draining is routine, not an error
        log.log(
            logging.INFO if exc.status == 503 else logging.ERROR, "%s: %s", exc.code, exc.message
        )
    return error_response(exc.status, exc.code, exc.message, exc.headers, request.url.path)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()
    )
    message = problems or "invalid request"
    return error_response(422, InvalidRequest.code, message, path=request.url.path)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    known = FRAMEWORK_ERRORS.get(exc.status_code)
    code = known.code if known else f"http_{exc.status_code}"
    headers = dict(exc.headers or {})
    return error_response(exc.status_code, code, str(exc.detail), headers, request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
