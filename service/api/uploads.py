"""Reading the images of a predict request: multipart ``image`` parts or a raw image body."""

from __future__ import annotations

import asyncio

from fastapi import Request
from starlette.datastructures import UploadFile

from service.engine.engine import NamedImage
from service.errors import (
    InvalidRequest,
    NoImage,
    TooManyImages,
    UnsupportedMediaType,
    UploadTimeout,
)

IMAGE_FIELD = "image"
RAW_BODY_TYPES = ("image/", "application/octet-stream")

# Documents the multipart body that the handlers parse themselves (to own limits and errors).
IMAGE_UPLOAD_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [IMAGE_FIELD],
                    "properties": {
                        IMAGE_FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more images (JPEG, PNG, WebP, GIF, BMP, TIFF)",
                        }
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


async def read_images(request: Request, max_images: int, timeout_s: float) -> list[NamedImage]:
    """All images of the request, in order, received within ``timeout_s`` (a client that
    trickles its body gets 408). Raises typed errors for every malformed case."""
    try:
        return await asyncio.wait_for(_read_images(request, max_images), timeout_s)
    except TimeoutError:
        raise UploadTimeout(f"the request body did not arrive within {timeout_s:g} s") from None


async def _read_images(request: Request, max_images: int) -> list[NamedImage]:
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith(RAW_BODY_TYPES):
        return [NamedImage(name="body", data=await request.body())]
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType(
            f"send multipart/form-data with '{IMAGE_FIELD}' file parts, or a raw image body "
            f"(got content-type {content_type or 'none'!r})"
        )
    # Starlette's own part limits stay at their defaults; the body-size limit bounds memory.
    async with request.form() as form:
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
    return images
