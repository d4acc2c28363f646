"""Reading the images of a predict request: multipart ``image`` parts or a raw image body."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from fastapi import Request
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.engine.engine import NamedImage
from service.errors import (
    InvalidRequest,
    NoImage,
    TooManyImages,
    UnsupportedMediaType,
    UploadTimeout,
)

T = TypeVar("T")
IMAGE_FIELD = "image"
MAX_TEXT_FIELDS = 64
RAW_BODY_TYPES = ("image/", "application/octet-stream")
# The upload form's name in the schema's components, which generated clients name it by.
UPLOAD_SCHEMA = "ImageUpload"


def image_upload_openapi(
    max_images: int, formats: Iterable[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI ``requestBody`` of the predict routes, which parse their body themselves
    (to own limits and errors), and the :data:`UPLOAD_SCHEMA` it refers to. Built per app:
    ``maxItems`` is the configured limit, each part's ``contentType`` lists the configured
    formats. What no schema can say (that the bytes decode as an image within the size
    limits) is in the descriptions."""
    Image.init()
    accepted = ", ".join(sorted({Image.MIME[name] for name in formats if name in Image.MIME}))
    form = {
        "type": "object",
        "required": [IMAGE_FIELD],
        "properties": {
            IMAGE_FIELD: {
                "type": "array",
                "items": {"type": "string", "format": "binary"},
                "minItems": 1,
                "maxItems": max_images,
                "description": f"1 to {max_images} image files, one part each, answered in "
                f"upload order. Formats: {accepted}.",
            }
        },
    }
    body = {
        "required": True,
        "description": "Images to predict on. Bytes that do not decode as an accepted format "
        "are answered with 415 or 422: a schema cannot express that. A raw `image/*` body "
        "is one image (client generators support only the `multipart/form-data` form).",
        "content": {
            "multipart/form-data": {
                "schema": {"$ref": f"#/components/schemas/{UPLOAD_SCHEMA}"},
                "encoding": {
                    IMAGE_FIELD: {
                        "contentType": accepted,
                        "headers": {
                            "Content-Disposition": {
                                "description": "Each part is a file part: it has a filename "
                                "(a part without one is a text field, answered with 422).",
                                "schema": {"type": "string"},
                                "example": f'form-data; name="{IMAGE_FIELD}"; filename="a.jpg"',
                            }
                        },
                    }
                },
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    return body, form


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
