"""Inference engine: image bytes -> tensors -> CLIP image features -> rank distributions.

Knows nothing of HTTP; raises :mod:`service.errors` types.
"""
