"""The OpenAPI document as a contract for generated clients and fuzzers.

FastAPI derives paths, parameters and response models from the routes; this module adds
what only the running app knows: the security each route enforces (read from its
dependencies, so the schema cannot drift from the code), the upload body with the
configured limits, and the tasks served right now as examples of the ``task`` parameter.
The static part is built once; the examples are refreshed on every request for
``/openapi.json``, because a reload changes them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from PIL import Image
from starlette.routing import BaseRoute

from service.api.deps import IMAGE_FIELD, get_images, require_admin_key, require_api_key
from service.engine.lifecycle import EngineHost
from service.settings import Settings

KEY_HELP = "The key goes in `Authorization: Bearer <key>` or in `X-API-Key: <key>`."
SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `OCLIP_API_KEYS`. " + KEY_HELP,
    },
    "apiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key from `OCLIP_API_KEYS`. " + KEY_HELP,
    },
    "adminBearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An admin key from `OCLIP_ADMIN_API_KEYS`. " + KEY_HELP,
    },
    "adminApiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An admin key from `OCLIP_ADMIN_API_KEYS`. " + KEY_HELP,
    },
}
API_SECURITY = [{"bearerAuth": []}, {"apiKeyAuth": []}]
ADMIN_SECURITY = [{"adminBearerAuth": []}, {"adminApiKeyAuth": []}]
TASK_PARAMETER_HELP = (
    "A served task name. Not an enum: the served set changes when the registry is reloaded; "
    "`GET /v1/models` lists it. An unknown name is answered with 404 `unknown_task`."
)


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


def install_openapi(app: FastAPI, settings: Settings, host: EngineHost) -> None:
    """Replace ``app.openapi`` with the contract of this app (see the module docstring)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_contract(app, settings)
        schema = copy.deepcopy(app.openapi_schema)
        served = sorted(host.engine.tasks) if host.engine is not None else []
        describe_served_tasks(schema, served)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_contract(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """FastAPI's document for ``app``, with security and the upload body added per route."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=[{"url": "/", "description": "This server"}],
    )
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    # the keys the app enforces (loaded once by create_app), not the key file read again
    api_security = API_SECURITY if app.state.api_keys else [{}, *API_SECURITY]
    # Past the encoder queue's size, a request is refused whatever the per-request limit.
    max_images = min(settings.max_images_per_request, settings.max_queued_images)
    upload, form = image_upload_openapi(max_images, settings.format_set())
    schema["components"].setdefault("schemas", {})[UPLOAD_SCHEMA] = form
    for route, operation in _operations(app, schema):
        calls = set(_calls(route.dependant))
        if require_admin_key in calls:
            operation["security"] = ADMIN_SECURITY
        elif require_api_key in calls:
            operation["security"] = api_security  # `{}` first: keys are off on this server
        else:
            operation["security"] = []  # documented as open
        if get_images in calls:
            operation["requestBody"] = copy.deepcopy(upload)
    return schema


def describe_served_tasks(schema: dict[str, Any], served: list[str]) -> None:
    """Give every ``task`` path parameter the served tasks as examples (fuzzers and docs
    try those first) and say that the list is a snapshot."""
    now = f" Served now: {', '.join(served)}." if served else ""
    for operations in schema["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "task":
                    parameter["description"] = TASK_PARAMETER_HELP + now
                    if served:
                        parameter["schema"]["examples"] = served
                        parameter["examples"] = {name: {"value": name} for name in served}


def _operations(app: FastAPI, schema: dict[str, Any]) -> Iterator[tuple[APIRoute, dict[str, Any]]]:
    for route in _api_routes(app.routes):
        operations = schema["paths"].get(route.path_format, {})
        for method in route.methods:
            if method.lower() in operations:
                yield route, operations[method.lower()]


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # FastAPI >= 0.16x keeps an included router whole, behind a wrapper route.
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any] | None]:
    """Every dependency callable of a route, at any depth."""
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)
