"""Batch scoring of whole collections: ``python -m service.batch``.

The same engine as the server (built by :mod:`service.engine.factory`), driven from a list
of files instead of HTTP: locally in one process, or on Ray Data (``--ray``). Ray is an
optional extra and only :mod:`service.batch.ray_runner` imports it; the server never does.
"""
