"""Routers: predict, models, health."""
