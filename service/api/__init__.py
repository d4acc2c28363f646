"""HTTP layer: app factory, routes, request/response schemas, error mapping."""

from service.api.app import create_app

__all__ = ["create_app"]
