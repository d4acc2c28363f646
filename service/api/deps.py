"""FastAPI dependencies shared by the routers: the host, the leased engine, settings, keys,
and the request's images (multipart ``image`` parts or a raw image body).

All are ``async def``: FastAPI would run plain functions in a thread pool, a needless
thread hop per dependency per request. Order matters in a handler's signature: the
upload is read (and bounded in time) *before* the engine is leased, so a slow client
never pins an engine across a reload or holds a drain open.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.engine import InferenceEngine, NamedImage
from service.engine.lifecycle import EngineHost
from service.errors import (
    InvalidRequest,
    NoImage,
    Overloaded,
    TooManyImages,
    Unauthorized,
    UnsupportedMediaType,
    UploadTimeout,
    retry_after,
)
from service.settings import Settings

T = TypeVar("T")
IMAGE_FIELD = "image"
MAX_TEXT_FIELDS = 64
RAW_BODY_TYPES = ("image/", "application/octet-stream")


async def get_host(request: Request) -> EngineHost:
    host: EngineHost = request.app.state.host
    return host


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


class UploadSlots:
    """Uploads being received at once; past the limit a request is refused (429) before
    its body is read, which bounds the memory that slow or large uploads can hold."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0


async def _upload(request: Request, read: Callable[[], Awaitable[T]]) -> T:
    """``read()`` of the body in one of the upload slots, within the upload timeout."""
    settings: Settings = request.app.state.settings
    slots: UploadSlots = request.app.state.upload_slots
    if slots.busy >= slots.limit:
        raise Overloaded(
            f"{slots.busy} uploads are being received (limit {slots.limit}); retry shortly",
            headers=retry_after(1),
        )
    slots.busy += 1
    try:
        return await received_within(read(), settings.upload_timeout_s)
    finally:
        slots.busy -= 1


async def get_images(request: Request) -> list[NamedImage]:
    limit = request.app.state.settings.max_images_per_request
    return await _upload(request, lambda: read_images(request, limit))


async def get_body(request: Request) -> bytes:
    """The raw body (Open Inference Protocol requests parse their own)."""
    return await _upload(request, request.body)


async def received_within(read: Awaitable[T], timeout_s: float) -> T:
    """``read`` (of a request body) done within ``timeout_s``: a client that trickles its
    body gets 408."""
    try:
        return await asyncio.wait_for(read, timeout_s)
    except TimeoutError:
        raise UploadTimeout(f"the request body did not arrive within {timeout_s:g} s") from None


async def read_images(request: Request, max_images: int) -> list[NamedImage]:
    """All images of the request, in order. Raises typed errors for every malformed case."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith(RAW_BODY_TYPES):
        return [NamedImage(name="body", data=await request.body())]
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType(
            f"send multipart/form-data with '{IMAGE_FIELD}' file parts, or a raw image body "
            f"(got content-type {content_type or 'none'!r})"
        )
    # The parser stops at one file part past the limit (answered 413 below) and at a few
    # text fields: a flood of tiny parts costs little. The body-size limit bounds memory.
    try:
        form = await request.form(max_files=max_images + 1, max_fields=MAX_TEXT_FIELDS)
    except StarletteHTTPException as exc:
        if "Too many files" in str(exc.detail):
            raise TooManyImages(f"more than {max_images} images in one request") from None
        raise
    try:
        parts = form.getlist(IMAGE_FIELD)
        if not parts:
            raise NoImage(f"the request has no '{IMAGE_FIELD}' file part")
        if len(parts) > max_images:
            raise TooManyImages(f"more than {max_images} images in one request")
        images = []
        for index, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise InvalidRequest(f"part '{IMAGE_FIELD}' #{index} is a text field, not a file")
            name = part.filename or f"{IMAGE_FIELD}[{index}]"
            images.append(NamedImage(name=name, data=await part.read()))
    finally:
        await form.close()
    return images


def refuse_early(host: EngineHost, arrived: float | None, task_names: list[str] | None) -> None:
    """Before the body is read: draining (503), unknown tasks (404), encoders already past
    the target wait (429). The engine checks admission again for real."""
    host.check_accepting(arrived)
    engine = host.engine
    if engine is not None:
        engine.check_admission(list(engine.tasks) if task_names is None else task_names)


def _early_checks(request: Request, task_names: list[str] | None) -> None:
    refuse_early(request.app.state.host, request.scope["state"].get("arrived"), task_names)


async def check_task(task: str, request: Request) -> str:
    _early_checks(request, [task])
    return task


async def check_capacity(request: Request) -> None:
    """For multi-task predict: the tasks asked in ``?tasks=`` (all when absent)."""
    raw = request.query_params.get("tasks")
    _early_checks(request, None if raw is None else parse_task_list(raw))


def parse_task_list(raw: str) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    if not names:
        raise InvalidRequest("query parameter 'tasks' names no task")
    return names


async def get_engine(request: Request) -> AsyncIterator[InferenceEngine]:
    """The engine this request runs on, held until the request is done (hot reload safe)."""
    host: EngineHost = request.app.state.host
    with host.lease(arrived=request.scope["state"].get("arrived")) as engine:
        yield engine


def check_key(headers: Mapping[str, str], keys: list[bytes]) -> None:
    """``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (HTTP headers or gRPC
    metadata, lower-case names), compared in constant time."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" else headers.get("x-api-key", "")
    matched = False
    for key in keys:  # compare with every key, in constant time each
        matched |= hmac.compare_digest(presented.encode(), key)
    if not presented or not matched:
        raise Unauthorized(
            "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_api_key(request: Request) -> None:
    keys: list[bytes] = request.app.state.api_keys
    if keys:
        check_key(request.headers, keys)


async def require_admin_key(request: Request) -> None:
    check_key(request.headers, request.app.state.admin_keys)


HostDep = Annotated[EngineHost, Depends(get_host)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TaskDep = Annotated[str, Depends(check_task)]
CapacityChecked = Depends(check_capacity)
ImagesDep = Annotated[list[NamedImage], Depends(get_images)]
BodyDep = Annotated[bytes, Depends(get_body)]
# scope="function": the lease ends before the response is written, so a client that
# stops reading its answer cannot pin a retired engine or hold a drain open.
EngineDep = Annotated[InferenceEngine, Depends(get_engine, scope="function")]
Authenticated = Depends(require_api_key)
AdminAuthenticated = Depends(require_admin_key)
