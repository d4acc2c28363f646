"""Routers: predict, models, admin (only with admin keys), health."""

from service.api.routes import admin, health, models, predict

__all__ = ["admin", "health", "models", "predict"]
