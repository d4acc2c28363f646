"""Every error leaves the service as ``{"error": {"code", "message"}}``, never a traceback.

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


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    metrics.ERRORS.labels(code).inc()
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def internal_error_response() -> JSONResponse:
    return error_response(500, INTERNAL_ERROR.code, "internal error; the request was not processed")


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


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.status >= 500:  # a refusal while loading or draining is routine, not an error
        log.log(
            logging.INFO if exc.status == 503 else logging.ERROR, "%s: %s", exc.code, exc.message
        )
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()
    )
    return error_response(422, InvalidRequest.code, problems or "invalid request")


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    known = FRAMEWORK_ERRORS.get(exc.status_code)
    code = known.code if known else f"http_{exc.status_code}"
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
